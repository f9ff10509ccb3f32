package relay

import (
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

const djangoKey = "django-secret"

// received is one notification the test Django accepted.
type received struct {
	ID, State, WebhookID string
}

// django is testenv's Django (Django's exact key check and regex) seen the
// way these tests look at it.
type django struct{ *testenv.Django }

// received lists what Django accepted, in order.
func (d django) received() []received {
	var out []received
	for _, r := range d.Accepted() {
		out = append(out, received{ID: r.FlowRunID, State: r.State, WebhookID: r.Header.Get("Webhook-Id")})
	}
	return out
}

// setStatus makes Django answer f(call) (1-based) instead of its normal
// answer when f returns anything but 200; nil restores the normal answer.
func (d django) setStatus(f func(call int) int) {
	if f == nil {
		d.RespondWith(nil)
		return
	}
	d.RespondWith(func(n int) int {
		if s := f(n + 1); s != http.StatusOK {
			return s
		}
		return 0
	})
}

type rig struct {
	mr      *miniredis.Miniredis
	rdb     redis.UniversalClient
	django  django
	prefect *prefecttest.Server
	h       *Handler
}

func newRig(t *testing.T) *rig {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	dj := django{testenv.NewDjango(t, djangoKey)}
	pf := prefecttest.New(t)
	u, _ := url.Parse(dj.URL)
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
