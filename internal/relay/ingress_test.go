package relay

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

type refusingQueue struct{}

func (refusingQueue) EnqueueContext(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
	return nil, errors.New("connection refused")
}

func TestIngestAnswersWithTypedErrors(t *testing.T) {
	t.Parallel()
	good := `{"body": "Flow run glossy-bittern with id ` + runID + ` entered state Failed"}`
	cases := []struct {
		name   string
		off    bool
		queue  Enqueuer
		key    string
		body   string
		want   func(error) bool
		status string // Outcome.Status on success
		metric string // relay_inbound_total label counted
	}{
		{name: "relay off", off: true, want: func(err error) bool { return errors.Is(err, ErrOff) }},
		{name: "wrong key", key: "nope", body: good, want: func(err error) bool { return errors.Is(err, ErrUnauthorized) }, metric: "unauthorized"},
		{name: "no key", body: good, want: func(err error) bool { return errors.Is(err, ErrUnauthorized) }, metric: "unauthorized"},
		{name: "too large", key: "k", body: `{"body":"` + strings.Repeat("x", MaxBody) + `"}`,
			want: func(err error) bool { return errors.Is(err, ErrTooLarge) }, metric: "too_large"},
		{name: "unparseable", key: "k", body: `{"hello":1}`,
			want: func(err error) bool { var pe *ParseError; return errors.As(err, &pe) }, metric: "unparseable"},
		{name: "redis refuses", key: "k", body: good, queue: refusingQueue{},
			want: func(err error) bool { var qe *QueueError; return errors.As(err, &qe) }, metric: "enqueue_failed"},
		{name: "ignored state", key: "k", body: strings.Replace(good, "Failed", "Scheduled", 1), status: "ignored", metric: "ignored"},
		{name: "queued", key: "k", body: good, status: "queued", metric: "queued"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			var in *Ingress
			if !tc.off {
				q := tc.queue
				if q == nil {
					q = &recordingQueue{tasks: map[string]Notification{}}
				}
				in = &Ingress{Queue: q, Key: "k", States: NewStateFilter([]string{"Failed"}), metrics: newInboundMetrics(reg)}
			}
			out, err := in.Ingest(context.Background(), tc.key, strings.NewReader(tc.body))
			switch {
			case tc.want != nil && !tc.want(err):
				t.Fatalf("err = %v (%T)", err, err)
			case tc.want == nil && (err != nil || out.Status != tc.status):
				t.Fatalf("got %+v, %v; want status %q", out, err, tc.status)
			}
			if tc.metric != "" {
				var m dto.Metric
				_ = in.metrics.inbound.WithLabelValues(tc.metric).Write(&m)
				if got := m.GetCounter().GetValue(); got != 1 {
					t.Fatalf("relay_inbound_total{result=%q} = %v, want 1", tc.metric, got)
				}
			}
		})
	}
}

// The api with its embedded worker registers the relay's collectors on one
// registry: each is registered once, by the side that uses it.
func TestAPIAndWorkerShareARegistry(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "dj"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	t.Cleanup(func() { _ = rdb.Close() })
	reg := prometheus.NewRegistry()
	api := NewAPI(cfg, rdb, nil, reg)
	w := NewWorker(cfg, rdb, nil, nil, reg)
	api.Ingress.metrics.in("queued")
	w.Handler.Metrics.delivery("delivered")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, n := range []string{"relay_inbound_total", "relay_deliveries_total", "relay_django_request_seconds",
		"relay_end_to_end_seconds", "relay_reconciler_queued_total"} {
		if !names[n] {
			t.Errorf("%s not registered", n)
		}
	}
}
