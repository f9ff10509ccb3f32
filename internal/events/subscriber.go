package events

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

// Observer learns of every flow-run state event the subscriber handles, live
// or backfilled, before the cursor moves past it. stateType is Prefect's
// state type ("COMPLETED", "RUNNING", ...), occurred the event's time (the
// new state's timestamp). An error breaks the connection:
// events:live is deleted and the subscriber reconnects with a new
// generation, so nothing that relies on the stream outlives a missed event.
type Observer interface {
	OnStateEvent(ctx context.Context, runID, stateType string, occurred time.Time) error
}

// Ingester is the relay's entry point (relay.Ingress).
type Ingester interface {
	Ingest(ctx context.Context, key string, body io.Reader) (relay.Outcome, error)
}

// Config is what a Subscriber needs; zero durations take the defaults below.
type Config struct {
	Prefect *prefect.Client // backfill through /events/filter
	// StreamURL is the websocket URL of /events/out (StreamURL derives it
	// from the API URL).
	StreamURL string
	// Token is sent in the auth message: the API key or the basic-auth
	// string, as Prefect's own client does (empty: null).
	Token string
	// Header goes with the websocket handshake (Authorization).
	Header    http.Header
	Redis     redis.UniversalClient
	Ingress   Ingester
	Key       string // RELAY_INBOUND_KEY, presented to the ingress
	Observers []Observer
	Log       logrus.FieldLogger
	Registry  prometheus.Registerer

	// LeaseTTL is the lease's lifetime: a dead holder is replaced within
	// LeaseTTL + PollEvery.
	LeaseTTL   time.Duration
	RenewEvery time.Duration // holder renews its lease this often
	PollEvery  time.Duration // a standby tries to take the lease this often
	// Overlap is how far before the cursor (and before each connect) a
	// backfill re-reads: persisted events lag live ones by up to the
	// persister's flush interval, and live events can arrive slightly out of
	// occurred order.
	Overlap time.Duration
	// Settle is how long after a connect the second backfill runs: by then
	// every event that occurred before the live subscription has been
	// persisted (Prefect's persister flushes every 5 s).
	Settle      time.Duration
	LiveTTL     time.Duration // events:live's PX
	LiveRefresh time.Duration // how often events:live is refreshed
	// MaxLookback bounds how far back a backfill reaches after a long outage.
	MaxLookback time.Duration
	Buffer      int           // live events held while a backfill runs; more breaks the connection
	PingEvery   time.Duration // websocket ping, to notice a dead Prefect that never closed the TCP
	MaxBackoff  time.Duration // between failed connects
}

// Defaults.
const (
	DefaultLeaseTTL    = 4 * time.Second
	DefaultRenewEvery  = time.Second
	DefaultPollEvery   = 500 * time.Millisecond
	DefaultOverlap     = time.Minute
	DefaultSettle      = 7 * time.Second
	DefaultLiveTTL     = 15 * time.Second
	DefaultLiveRefresh = 2 * time.Second
	DefaultMaxLookback = relay.MaxLookback
	DefaultBuffer      = 50000
	DefaultPingEvery   = 15 * time.Second
	DefaultMaxBackoff  = 10 * time.Second
)

func (c *Config) withDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.LeaseTTL, DefaultLeaseTTL)
	set(&c.RenewEvery, DefaultRenewEvery)
	set(&c.PollEvery, DefaultPollEvery)
	set(&c.Overlap, DefaultOverlap)
	set(&c.Settle, DefaultSettle)
	set(&c.LiveTTL, DefaultLiveTTL)
	set(&c.LiveRefresh, DefaultLiveRefresh)
	set(&c.MaxLookback, DefaultMaxLookback)
	set(&c.PingEvery, DefaultPingEvery)
	set(&c.MaxBackoff, DefaultMaxBackoff)
	if c.Buffer <= 0 {
		c.Buffer = DefaultBuffer
	}
	if c.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		c.Log = l
	}
}

// Redis keys (see the package comment).
const (
	KeyLease      = "events:lease"
	KeyCursor     = "events:cursor"
	KeyGeneration = "events:generation"
	KeyLive       = "events:live"
	KeyOrigin     = "events:origin" // unix µs of the very first start: no backfill reaches before it
)

// Subscriber is the event-stream source. Run it in every worker process;
// one at a time holds the lease and reads.
type Subscriber struct {
	cfg     Config
	id      string // this process's lease value
	metrics *metrics
	seen    *seenSet

	mu    sync.Mutex
	state localState
}

// localState is what this process knows of its own subscription.
type localState struct {
	leader     bool
	connected  bool
	live       bool // connected and backfilled: events:live is ours
	generation int64
	lastErr    string
	lastEvent  time.Time // receipt of the last live event
}

// New builds a subscriber; Run starts it.
func New(cfg Config) *Subscriber {
	cfg.withDefaults()
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Subscriber{
		cfg:     cfg,
		id:      fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		metrics: newMetrics(cfg.Registry),
		seen:    newSeenSet(10000),
	}
}

// StreamURL turns Prefect's API root (http://host:4200/api) into the
// websocket URL of its event stream (ws://host:4200/api/events/out).
func StreamURL(apiRoot string) string {
	u := strings.TrimRight(apiRoot, "/") + "/events/out"
	switch {
	case strings.HasPrefix(u, "https://"):
		return "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		return "ws://" + strings.TrimPrefix(u, "http://")
	}
	return u
}

// Run takes part in the election until ctx ends: while this process holds
// the lease it reads the stream, reconnecting as needed; otherwise it waits
// for the lease. On return the lease and events:live are released.
func (s *Subscriber) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		won, expires, err := s.acquire(ctx)
		if err != nil && ctx.Err() == nil {
			s.setErr(fmt.Errorf("cannot take the lease: %w", err))
		}
		if won {
			s.lead(ctx, expires)
		}
		t.Reset(s.cfg.PollEvery)
	}
}

// lead reads the stream while the lease holds, then gives it up.
func (s *Subscriber) lead(ctx context.Context, expires time.Time) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.setLeader(true)
	s.cfg.Log.WithField("holder", s.id).Info("events: took the subscriber lease; reading Prefect's event stream")
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		s.keepLease(lctx, expires, cancel)
	}()
	backoff := time.Duration(0)
	for lctx.Err() == nil {
		started := time.Now()
		err := s.session(lctx)
		if lctx.Err() != nil {
			break
		}
		if time.Since(started) > time.Minute {
			backoff = 0 // a connection that lasted: reconnect at once
		}
		s.metrics.reconnects.Inc()
		s.setErr(err)
		s.cfg.Log.WithError(err).Warn("events: stream connection ended; reconnecting (backfill covers the gap)")
		select {
		case <-lctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(max(2*backoff, time.Second), s.cfg.MaxBackoff)
		if err == nil || errors.Is(err, errLiveLost) || errors.Is(err, errObserver) {
			backoff = 0
		}
	}
	cancel()
	<-renewed
	s.setLeader(false)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer rcancel()
	if err := deleteScript.Run(rctx, s.cfg.Redis, []string{KeyLease}, s.id).Err(); err != nil {
		s.cfg.Log.WithError(err).Debug("events: cannot release the lease (it expires on its own)")
	}
}

// errLiveLost: events:live no longer holds this connection's generation.
var errLiveLost = errors.New("events:live no longer holds this connection's generation")

// errObserver wraps an observer's failure.
var errObserver = errors.New("observer failed")

// session is one connection: connect, backfill from the cursor, go live.
// It returns why the connection ended.
func (s *Subscriber) session(ctx context.Context) error {
	conn, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.close()
	gen, err := s.newGeneration(ctx)
	if err != nil {
		return err
	}
	connectedAt := time.Now().UTC()
	s.setConnected(true, gen)
	s.metrics.connected.Set(1)
	defer func() {
		s.metrics.connected.Set(0)
		s.setConnected(false, gen)
		s.dropLive(ctx, gen)
	}()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	live := make(chan event, s.cfg.Buffer)
	var readErr error
	go func() {
		readErr = conn.read(sctx, live, s.cfg.PingEvery)
		close(live)
	}()

	secondFrom, err := s.catchUp(ctx, connectedAt)
	if err != nil {
		return err
	}
	settle := time.NewTimer(time.Until(connectedAt.Add(s.cfg.Settle)))
	defer settle.Stop()
	refresh := time.NewTicker(s.cfg.LiveRefresh)
	defer refresh.Stop()
	isLive := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-live:
			if !ok {
				return fmt.Errorf("events: stream: %w", readErr)
			}
			err = s.handle(ctx, ev, sourceLive)
		case <-settle.C:
			err = s.goLive(ctx, gen, secondFrom)
			isLive = err == nil
		case <-refresh.C:
			if isLive {
				err = s.refreshLive(ctx, gen)
			}
		}
		if err != nil {
			return err
		}
	}
}

// newGeneration numbers a new connection. Whatever events:live holds is an
// earlier connection's (this process holds the lease): a holder that died
// cannot delete it, and until this connection has backfilled, nothing may
// count on the stream.
func (s *Subscriber) newGeneration(ctx context.Context) (int64, error) {
	gen, err := s.cfg.Redis.Incr(ctx, KeyGeneration).Result()
	if err != nil {
		return 0, fmt.Errorf("events: new generation: %w", err)
	}
	if err := s.cfg.Redis.Del(ctx, KeyLive).Err(); err != nil {
		return 0, fmt.Errorf("events: delete %s: %w", KeyLive, err)
	}
	return gen, nil
}

// catchUp is a connection's first backfill, from the cursor; it returns
// where the second (after Settle) starts.
func (s *Subscriber) catchUp(ctx context.Context, connectedAt time.Time) (time.Time, error) {
	from, err := s.startFrom(ctx, connectedAt)
	if err != nil {
		return time.Time{}, err
	}
	if from.IsZero() {
		return connectedAt, nil // first start: the minute before it is history
	}
	if err := s.backfill(ctx, from); err != nil {
		return time.Time{}, err
	}
	return later(connectedAt.Add(-s.cfg.Overlap), from), nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// goLive runs the second backfill, which finds what Prefect had not yet
// persisted at the first, and then publishes the generation in events:live.
func (s *Subscriber) goLive(ctx context.Context, gen int64, from time.Time) error {
	if err := s.backfill(ctx, from); err != nil {
		return err
	}
	if err := s.cfg.Redis.Set(ctx, KeyLive, gen, s.cfg.LiveTTL).Err(); err != nil {
		return fmt.Errorf("events: set %s: %w", KeyLive, err)
	}
	s.setLive(true)
	s.cfg.Log.WithField("generation", gen).Info("events: backfill done; live")
	return nil
}

// refreshLive extends events:live; errLiveLost when it no longer holds gen.
func (s *Subscriber) refreshLive(ctx context.Context, gen int64) error {
	ok, err := extendScript.Run(ctx, s.cfg.Redis, []string{KeyLive}, gen, s.cfg.LiveTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("events: refresh %s: %w", KeyLive, err)
	}
	if ok != 1 {
		return errLiveLost
	}
	return nil
}

// startFrom is where the first backfill of a connection starts: the cursor
// minus the overlap, at most MaxLookback ago. Zero: no backfill, this is the
// very first start (the cursor is recorded now: history is never replayed,
// it would resend every old failure e-mail).
func (s *Subscriber) startFrom(ctx context.Context, now time.Time) (time.Time, error) {
	c, ok, err := loadCursor(ctx, s.cfg.Redis)
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		first := Cursor{Occurred: now}
		if err := s.cfg.Redis.SetNX(ctx, KeyOrigin, now.UnixMicro(), 0).Err(); err != nil {
			return time.Time{}, err
		}
		if err := first.save(ctx, s.cfg.Redis); err != nil {
			return time.Time{}, err
		}
		s.metrics.cursor.Set(float64(now.UnixMicro()) / 1e6)
		s.cfg.Log.WithField("cursor", now).Info("events: first start; cursor begins now")
		return time.Time{}, nil
	}
	s.metrics.cursor.Set(float64(c.Occurred.UnixMicro()) / 1e6)
	from := c.Occurred.Add(-s.cfg.Overlap)
	// The overlap never reaches before the first start: that is history.
	if us, err := s.cfg.Redis.Get(ctx, KeyOrigin).Int64(); err == nil && from.Before(time.UnixMicro(us)) {
		from = time.UnixMicro(us).UTC()
	}
	if floor := now.Add(-s.cfg.MaxLookback); from.Before(floor) {
		s.cfg.Log.WithField("cursor", c.Occurred).Warnf("events: cursor older than %s; backfilling from %s only", s.cfg.MaxLookback, floor)
		from = floor
	}
	return from, nil
}

// handle feeds one state event to the relay and the observers, then moves
// the cursor. Any failure but an unusable event breaks the connection: the
// next one backfills from the cursor, so the event is not lost.
func (s *Subscriber) handle(ctx context.Context, ev event, source string) error {
	runID, stateType, ok := ev.stateChange()
	if !ok || s.seen.has(ev.ID) {
		return nil
	}
	s.metrics.received.WithLabelValues(source).Inc()
	if source == sourceLive {
		now := time.Now()
		s.metrics.lag.Observe(max(now.Sub(ev.Occurred), 0).Seconds())
		s.mu.Lock()
		s.state.lastEvent = now
		s.mu.Unlock()
	}
	_, err := s.cfg.Ingress.Ingest(ctx, s.cfg.Key, bytes.NewReader(ev.raw))
	var pe *relay.ParseError
	switch {
	case errors.As(err, &pe):
		s.cfg.Log.WithFields(logrus.Fields{"event_id": ev.ID, "event": ev.Event, "reason": pe.Message}).
			Warn("events: state event the relay cannot use; skipped")
	case err != nil:
		return fmt.Errorf("events: relay ingress: %w", err)
	}
	for _, o := range s.cfg.Observers {
		if err := o.OnStateEvent(ctx, runID, stateType, ev.Occurred); err != nil {
			return fmt.Errorf("events: %w: %w", errObserver, err)
		}
	}
	if err := (Cursor{Occurred: ev.Occurred, ID: ev.ID}).save(ctx, s.cfg.Redis); err != nil {
		return fmt.Errorf("events: move the cursor: %w", err)
	}
	s.seen.add(ev.ID)
	if c := float64(ev.Occurred.UnixMicro()) / 1e6; c > s.metrics.cursorValue() {
		s.metrics.cursor.Set(c)
	}
	return nil
}

// dropLive deletes events:live if it still holds gen (fresh context: ctx
// may be the one that ended).
func (s *Subscriber) dropLive(ctx context.Context, gen int64) {
	s.setLive(false)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := deleteScript.Run(dctx, s.cfg.Redis, []string{KeyLive}, gen).Err(); err != nil {
		s.cfg.Log.WithError(err).Warn("events: cannot delete events:live (it expires on its own)")
	}
}

func (s *Subscriber) setLeader(on bool) {
	s.mu.Lock()
	s.state.leader = on
	s.mu.Unlock()
	if on {
		s.metrics.leader.Set(1)
	} else {
		s.metrics.leader.Set(0)
	}
}

func (s *Subscriber) setConnected(on bool, gen int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.connected = on
	if on {
		s.state.generation = gen
		s.state.lastErr = ""
	}
}

func (s *Subscriber) setLive(on bool) {
	s.mu.Lock()
	s.state.live = on
	s.mu.Unlock()
}

func (s *Subscriber) setErr(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	s.state.lastErr = err.Error()
	s.mu.Unlock()
}

// Cursor is the newest event handled. In Redis it is the hash events:cursor
// {us: occurred in unix µs, occurred: RFC 3339, id: event id}.
type Cursor struct {
	Occurred time.Time `json:"occurred"`
	ID       string    `json:"id,omitempty"`
}

// save moves the cursor to c unless it already stands at a later event.
func (c Cursor) save(ctx context.Context, rdb redis.UniversalClient) error {
	return advanceScript.Run(ctx, rdb, []string{KeyCursor},
		c.Occurred.UnixMicro(), c.Occurred.UTC().Format(time.RFC3339Nano), c.ID).Err()
}

// loadCursor reads events:cursor; ok=false when there is none.
func loadCursor(ctx context.Context, rdb redis.UniversalClient) (c Cursor, ok bool, err error) {
	vals, err := rdb.HGetAll(ctx, KeyCursor).Result()
	if err != nil {
		return c, false, fmt.Errorf("events: read the cursor: %w", err)
	}
	if len(vals) == 0 {
		return c, false, nil
	}
	us, err := strconv.ParseInt(vals["us"], 10, 64)
	if err != nil {
		return c, false, fmt.Errorf("events: bad %s in Redis: %v", KeyCursor, vals)
	}
	return Cursor{Occurred: time.UnixMicro(us).UTC(), ID: vals["id"]}, true, nil
}

// seenSet remembers the last n event ids handled in this process, so the
// backfill's overlap does not queue a delivery task per event already
// handled (the relay would drop it as a duplicate anyway).
type seenSet struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

func newSeenSet(n int) *seenSet {
	return &seenSet{ids: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (s *seenSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

func (s *seenSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok || id == "" {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.ids[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}
