package events

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

// fakePrefect speaks /events/out and /events/filter as Prefect 3.6 and 3.9
// do (checked against both): the auth and filter messages, live events to
// subscribed sockets, and /events/filter pages (PageSize events each, oldest
// first) with a next_page URL carrying a page-token. Events are persisted
// (visible to /events/filter) only when persist is true, like Prefect's
// persister that lags the live stream.
type fakePrefect struct {
	t        *testing.T
	srv      *httptest.Server
	token    string // expected auth token ("" accepts null)
	pageSize int

	mu        sync.Mutex
	persisted []json.RawMessage
	socks     map[*websocket.Conn]context.CancelFunc
	connects  int
	filters   int
}

func newFakePrefect(t *testing.T) *fakePrefect {
	f := &fakePrefect{t: t, pageSize: 2, socks: map[*websocket.Conn]context.CancelFunc{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/events/out", f.stream)
	mux.HandleFunc("POST /api/events/filter", f.filter)
	mux.HandleFunc("GET /api/events/filter/next", f.next)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.dropAll()
		f.srv.Close()
	})
	return f
}

func (f *fakePrefect) client() *prefect.Client {
	u, _ := url.Parse(f.srv.URL + "/api")
	return prefect.New(prefect.Config{BaseURL: u, Timeout: 5 * time.Second})
}

func (f *fakePrefect) stream(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"prefect"}})
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var auth struct {
		Type  string  `json:"type"`
		Token *string `json:"token"`
	}
	if readJSON(ctx, c, &auth) != nil || auth.Type != "auth" {
		c.Close(websocket.StatusPolicyViolation, "Expected 'auth' message")
		return
	}
	if f.token != "" && (auth.Token == nil || *auth.Token != f.token) {
		c.Close(websocket.StatusPolicyViolation, "Invalid token")
		return
	}
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"auth_success"}`))
	var filter struct {
		Type     string `json:"type"`
		Backfill *bool  `json:"backfill"`
	}
	if readJSON(ctx, c, &filter) != nil || filter.Type != "filter" {
		c.Close(websocket.StatusProtocolError, "Expected 'filter' message")
		return
	}
	if filter.Backfill == nil || *filter.Backfill {
		f.t.Errorf("subscriber asked the stream for its own backfill")
	}
	f.mu.Lock()
	f.socks[c] = cancel
	f.connects++
	f.mu.Unlock()
	// Hold the socket until the client or the test closes it; reading
	// answers pings.
	for {
		if _, _, err := c.Read(ctx); err != nil {
			f.mu.Lock()
			delete(f.socks, c)
			f.mu.Unlock()
			return
		}
	}
}

func readJSON(ctx context.Context, c *websocket.Conn, v any) error {
	_, b, err := c.Read(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// publish sends ev live to every subscribed socket; persist also makes it
// visible to /events/filter.
func (f *fakePrefect) publish(ev json.RawMessage, persist bool) {
	f.mu.Lock()
	if persist {
		f.persisted = append(f.persisted, ev)
	}
	socks := make([]*websocket.Conn, 0, len(f.socks))
	for c := range f.socks {
		socks = append(socks, c)
	}
	f.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"type": "event", "event": ev})
	for _, c := range socks {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.Write(ctx, websocket.MessageText, msg)
		cancel()
	}
}

// persist makes events visible to /events/filter (the persister's flush).
func (f *fakePrefect) persist(evs ...json.RawMessage) {
	f.mu.Lock()
	f.persisted = append(f.persisted, evs...)
	f.mu.Unlock()
}

// dropAll closes every socket, as a Prefect restart does.
func (f *fakePrefect) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c, cancel := range f.socks {
		c.CloseNow()
		cancel()
		delete(f.socks, c)
	}
}

func (f *fakePrefect) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.socks)
}

type filterBody struct {
	Filter struct {
		Occurred struct {
			Since time.Time `json:"since"`
			Until time.Time `json:"until"`
		} `json:"occurred"`
		Order string `json:"order"`
	} `json:"filter"`
	Limit int `json:"limit"`
}

func (f *fakePrefect) filter(w http.ResponseWriter, r *http.Request) {
	var body filterBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Limit > 50 || body.Filter.Order != "ASC" {
		http.Error(w, `{"detail":"bad filter"}`, http.StatusUnprocessableEntity)
		return
	}
	f.mu.Lock()
	f.filters++
	f.mu.Unlock()
	f.page(w, body.Filter.Occurred.Since, body.Filter.Occurred.Until, 0)
}

func (f *fakePrefect) next(w http.ResponseWriter, r *http.Request) {
	raw, err := base64.StdEncoding.DecodeString(r.URL.Query().Get("page-token"))
	var tok struct {
		Since, Until time.Time
		Offset       int
	}
	if err != nil || json.Unmarshal(raw, &tok) != nil {
		http.Error(w, "{}", http.StatusForbidden)
		return
	}
	f.page(w, tok.Since, tok.Until, tok.Offset)
}

func (f *fakePrefect) page(w http.ResponseWriter, since, until time.Time, offset int) {
	f.mu.Lock()
	var match []json.RawMessage
	for _, raw := range f.persisted {
		var ev struct{ Occurred time.Time }
		_ = json.Unmarshal(raw, &ev)
		if !ev.Occurred.Before(since) && !ev.Occurred.After(until) {
			match = append(match, raw)
		}
	}
	f.mu.Unlock()
	slices.SortStableFunc(match, func(a, b json.RawMessage) int { return occurredOf(a).Compare(occurredOf(b)) })
	end := min(offset+f.pageSize, len(match))
	out := map[string]any{"events": []json.RawMessage{}, "total": len(match), "next_page": nil}
	if offset < len(match) {
		out["events"] = match[offset:end]
	}
	if end < len(match) {
		tok, _ := json.Marshal(map[string]any{"Since": since, "Until": until, "Offset": end})
		out["next_page"] = "http://prefect.example:4200/api/events/filter/next?page-token=" +
			base64.StdEncoding.EncodeToString(tok)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func occurredOf(raw json.RawMessage) time.Time {
	var ev struct{ Occurred time.Time }
	_ = json.Unmarshal(raw, &ev)
	return ev.Occurred
}

// stateEvent is a flow-run state event as Prefect emits it.
func stateEvent(id, run, name, typ string, at time.Time) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"id": id, "event": "prefect.flow-run." + name, "occurred": at.UTC().Format(time.RFC3339Nano),
		"resource": map[string]string{
			"prefect.resource.id": "prefect.flow-run." + run, "prefect.resource.name": "run-" + run[:4],
			"prefect.state-name": name, "prefect.state-type": typ,
			"prefect.state-timestamp": at.UTC().Format("2006-01-02T15:04:05.000000-07:00"),
		},
		"related": []any{}, "payload": map[string]any{}, "received": at.UTC().Format(time.RFC3339Nano),
	})
	return b
}

// ingested is one event the fake ingress received.
type ingested struct {
	ID, Run, State string
}

// fakeIngress records what reaches the relay (parsed as the relay does).
type fakeIngress struct {
	mu   sync.Mutex
	got  []ingested
	fail error
}

func (i *fakeIngress) Ingest(_ context.Context, key string, body io.Reader) (relay.Outcome, error) {
	if key != testKey {
		return relay.Outcome{}, relay.ErrUnauthorized
	}
	b, _ := io.ReadAll(body)
	n, err := relay.Parse(b)
	if err != nil {
		return relay.Outcome{}, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.fail != nil {
		return relay.Outcome{}, i.fail
	}
	i.got = append(i.got, ingested{ID: n.StateID, Run: n.FlowRunID, State: n.State})
	return relay.Outcome{Status: "queued", FlowRunID: n.FlowRunID, State: n.State}, nil
}

func (i *fakeIngress) ids() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := make([]string, 0, len(i.got))
	for _, g := range i.got {
		out = append(out, g.ID)
	}
	return out
}

// observer records state events and fails while failing is set.
type observer struct {
	mu      sync.Mutex
	seen    []string // run:type
	failing bool
}

func (o *observer) OnStateEvent(_ context.Context, runID, stateType string, _ time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failing {
		o.failing = false
		return fmt.Errorf("cache unavailable")
	}
	o.seen = append(o.seen, runID+":"+stateType)
	return nil
}

func (o *observer) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.seen)
}

const testKey = "inbound-key"

// rig is a fake Prefect, a miniredis and a subscriber config with short
// timings.
type rig struct {
	prefect *fakePrefect
	mr      *miniredis.Miniredis
	rdb     *redis.Client
	ingress *fakeIngress
	obs     *observer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return &rig{prefect: newFakePrefect(t), mr: mr, rdb: rdb, ingress: &fakeIngress{}, obs: &observer{}}
}

func (r *rig) config() Config {
	return Config{
		Prefect:     r.prefect.client(),
		StreamURL:   StreamURL(r.prefect.srv.URL + "/api"),
		Token:       r.prefect.token,
		Redis:       r.rdb,
		Ingress:     r.ingress,
		Key:         testKey,
		Observers:   []Observer{r.obs},
		LeaseTTL:    400 * time.Millisecond,
		RenewEvery:  50 * time.Millisecond,
		PollEvery:   20 * time.Millisecond,
		Overlap:     time.Minute,
		Settle:      150 * time.Millisecond,
		LiveRefresh: 50 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
		PingEvery:   time.Second,
	}
}

// start runs a subscriber until the test ends (or stop is called).
func (r *rig) start(t *testing.T, cfg Config) (sub *Subscriber, stop func()) {
	t.Helper()
	sub = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sub.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return sub, stop
}

// waitFor polls cond for up to 10 s: a correctness wait, not a timing
// assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) live() string {
	v, _ := r.rdb.Get(context.Background(), KeyLive).Result()
	return v
}

func (r *rig) generation() int64 {
	v, _ := r.rdb.Get(context.Background(), KeyGeneration).Result()
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}
