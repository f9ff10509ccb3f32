package relay

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

const djangoKey = "django-secret"

// received is one notification the fake Django accepted.
type received struct {
	ID, State, WebhookID string
}

// fakeDjango applies Django's exact key check (400 "unauthorized") and regex
// (webhook_api.py / webhook_functions.py) and records what it understood.
type fakeDjango struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	status func(call int) int // nil: 200
	calls  int
}

var djangoRegex = regexp.MustCompile(`Flow run ([a-zA-Z0-9-]+) with id ([a-zA-Z0-9-]+) entered state ([a-zA-Z0-9]+)`)

func newFakeDjango(t testing.TB) *fakeDjango {
	d := &fakeDjango{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.calls++
		call := d.calls
		status := d.status
		d.mu.Unlock()
		if status != nil {
			if s := status(call); s != 200 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(s)
				return
			}
		}
		if r.Header.Get("X-Notification-Key") != djangoKey {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"detail": "unauthorized"}`))
			return
		}
		var body struct {
			Body string `json:"body"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			w.WriteHeader(500)
			return
		}
		if m := djangoRegex.FindStringSubmatch(body.Body); m != nil {
			d.mu.Lock()
			d.got = append(d.got, received{ID: m[2], State: m[3], WebhookID: r.Header.Get("Webhook-Id")})
			d.mu.Unlock()
		}
		_, _ = w.Write([]byte(`{"status": "ok"}`))
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *fakeDjango) received() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.got...)
}

func (d *fakeDjango) setStatus(f func(int) int) {
	d.mu.Lock()
	d.status = f
	d.mu.Unlock()
}

type rig struct {
	mr      *miniredis.Miniredis
	rdb     redis.UniversalClient
	django  *fakeDjango
	prefect *prefecttest.Server
	h       *Handler
}

func newRig(t *testing.T) *rig {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	dj := newFakeDjango(t)
	pf := prefecttest.New(t)
	u, _ := url.Parse(dj.URL + "/webhooks/v1/notification/")
	log := logrus.New()
	log.SetOutput(io.Discard)
	return &rig{mr: mr, rdb: rdb, django: dj, prefect: pf, h: &Handler{
		Store:   NewStore(rdb),
		Django:  NewDjango(u, djangoKey),
		Prefect: pf.Client(),
		States:  NewStateFilter([]string{"Pending", "Running", "Completed", "Cancelled", "Failed", "Crashed", "TimedOut"}),
		Log:     log,
	}}
}

func note(state string, ts time.Time) Notification {
	return Notification{FlowRunID: runID, Name: "r_1.x", State: state, StateType: typeOfName[state], Timestamp: ts, Source: "template"}
}
