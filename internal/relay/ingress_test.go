package relay

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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

// A state stamped far in the future is refused at the door, so it cannot
// mark its run as finished "later" and make the run's real next state stale.
func TestFutureTimestampIsRefusedAndDoesNotSuppressLaterStates(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	now := time.Now().UTC()
	q := &recordingQueue{tasks: map[string]Notification{}}
	in := &Ingress{Queue: q, Key: "k", MaxRetry: 3, metrics: newInboundMetrics(prometheus.NewRegistry()),
		Now: func() time.Time { return now }}
	tmpl := func(state string, ts string) string {
		return `{"flow_run_id": "` + runID + `", "flow_run_name": "r_1", "state_name": "` + state +
			`", "state_type": "` + typeOfName[state] + `", "state_timestamp": "` + ts + `"}`
	}
	for _, tc := range []struct {
		name, body string
		refused    bool
	}{
		{"year 9999", tmpl("Completed", "9999-12-31T23:59:59+00:00"), true},
		{"an hour ahead", tmpl("Failed", now.Add(time.Hour).Format(time.RFC3339Nano)), true},
		{"within the skew", tmpl("Running", now.Add(time.Minute).Format(time.RFC3339Nano)), false},
		{"the real later state", tmpl("Completed", now.Add(2*time.Minute).Format(time.RFC3339Nano)), false},
	} {
		_, err := in.Ingest(context.Background(), "k", strings.NewReader(tc.body))
		var pe *ParseError
		if refused := errors.As(err, &pe); refused != tc.refused {
			t.Fatalf("%s: err = %v", tc.name, err)
		}
	}
	var m dto.Metric
	_ = in.metrics.inbound.WithLabelValues("future_timestamp").Write(&m)
	if m.GetCounter().GetValue() != 2 || len(q.tasks) != 2 {
		t.Fatalf("future_timestamp = %v, queued %d", m.GetCounter().GetValue(), len(q.tasks))
	}
	// Deliver what was queued, in timestamp order: both reach Django.
	var ns []Notification
	for _, n := range q.tasks {
		ns = append(ns, n)
	}
	if ns[0].Timestamp.After(ns[1].Timestamp) {
		ns[0], ns[1] = ns[1], ns[0]
	}
	for i, n := range ns {
		if err := r.h.Process(context.Background(), n, "task-"+n.State, false); err != nil {
			t.Fatalf("deliver %d: %v", i, err)
		}
	}
	got := r.django.received()
	if len(got) != 2 || got[0].State != "Running" || got[1].State != "Completed" {
		t.Fatalf("Django received %+v", got)
	}
}

func TestDeeplyNestedNotificationIsUnparseable(t *testing.T) {
	t.Parallel()
	in := &Ingress{Queue: &recordingQueue{tasks: map[string]Notification{}}, Key: "k",
		metrics: newInboundMetrics(prometheus.NewRegistry())}
	body := `{"body": ` + strings.Repeat(`{"body": `, 9000) + `"x"` + strings.Repeat("}", 9001)
	_, err := in.Ingest(context.Background(), "k", strings.NewReader(body))
	var pe *ParseError
	if !errors.As(err, &pe) || !strings.Contains(pe.Message, "nests deeper") {
		t.Fatalf("err = %v", err)
	}
}
