package worker

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/adaptive"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

type rig struct {
	rdb    redis.UniversalClient
	client *jobs.Client
	cfg    config.Config
	log    *logrus.Logger
}

func newRig(t *testing.T, ops ...jobs.Op[any]) *rig {
	t.Helper()
	mr := miniredis.RunT(t)
	opt, err := jobs.RedisOpt("redis://" + mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := config.Config{WorkerConcurrency: 2, JobEncryptionKey: bytes.Repeat([]byte{3}, 32), JobMaxAttempts: 3}
	c, err := jobs.NewClient(context.Background(), rdb, jobs.ClientConfig{Key: cfg.JobEncryptionKey, Ops: registry(ops...),
		MaxAttempts: 3, Retention: time.Hour, PollInterval: 100 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &rig{rdb: rdb, client: c, cfg: cfg, log: log}
}

func (r *rig) worker(t *testing.T, shutdown time.Duration, reg *prometheus.Registry, ops ...jobs.Op[any]) *Worker {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	w, err := New(Deps{Config: r.cfg, Log: r.log, Redis: r.rdb, Registry: reg, Ops: registry(ops...), ShutdownTimeout: shutdown})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (r *rig) waitState(t *testing.T, id string, want jobs.State) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := r.client.Get(context.Background(), id)
		if err == nil && j.State == want {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never reached %s (last %+v, %v)", id, want, j, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func registry(ops ...jobs.Op[any]) *jobs.Registry {
	reg := jobs.NewRegistry()
	for _, op := range ops {
		jobs.Register(reg, op)
	}
	return reg
}

func slowOp(name string, d time.Duration, started chan<- struct{}) jobs.Op[any] {
	return jobs.Op[any]{Kind: name, Queue: jobs.QueueDefault,
		Work: func(ctx context.Context, _ any, _ jobs.Run) (any, error) {
			if started != nil {
				started <- struct{}{}
			}
			select {
			case <-time.After(d):
				return "finished", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}}
}

func TestShutdownLetsAnInFlightJobFinish(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	op := slowOp("t:short", 300*time.Millisecond, started)
	r := newRig(t, op)
	w := r.worker(t, 5*time.Second, nil, op)
	e, err := jobs.Enqueue[any](context.Background(), r.client, op, nil, jobs.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	w.Shutdown() // as on SIGTERM: stop fetching, finish in-flight
	j := r.waitState(t, e.ID, jobs.StateSucceeded)
	if string(j.Body) != `"finished"` {
		t.Fatalf("body %s", j.Body)
	}
}

func TestShutdownHandsAnUnfinishedJobToAnotherWorker(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	stuck := slowOp("t:long", time.Hour, started)
	r := newRig(t, stuck)
	w1 := r.worker(t, 200*time.Millisecond, nil, stuck)
	e, err := jobs.Enqueue[any](context.Background(), r.client, stuck, nil, jobs.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	w1.Shutdown()
	j := r.waitState(t, e.ID, jobs.StateQueued)
	if j.Attempts != 0 {
		t.Fatalf("an interrupted attempt was counted: %+v", j)
	}
	// The second worker runs the same op name with a quick body.
	reg := prometheus.NewRegistry()
	w2 := r.worker(t, time.Second, reg, slowOp("t:long", 0, nil))
	defer w2.Shutdown()
	r.waitState(t, e.ID, jobs.StateSucceeded)

	rec := httptest.NewRecorder()
	w2.OpsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `proxy_jobs_processed_total{outcome="succeeded",type="t:long"} 1`) ||
		!strings.Contains(rec.Body.String(), `proxy_job_duration_seconds_count{type="t:long"} 1`) {
		t.Fatalf("metrics:\n%s", rec.Body.String())
	}
}

func TestRetryDelayDispatchesByTaskType(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	op := slowOp("t:x", 0, nil)
	w := r.worker(t, time.Second, nil, op)
	defer w.Shutdown()
	w.Handle("relay:deliver", asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }),
		func(int, error, *asynq.Task) time.Duration { return 42 * time.Second })
	if d := w.retryDelay(0, nil, asynq.NewTask("relay:deliver", nil)); d != 42*time.Second {
		t.Fatalf("relay delay %s", d)
	}
	if d := w.retryDelay(0, nil, asynq.NewTask("t:x", nil)); d > time.Second {
		t.Fatalf("write job first retry %s", d)
	}
}

// A relay pool saturated by deliveries that block (a Django answering after
// its whole timeout) leaves the write pool's slots free: a write job queued
// behind them still runs at once.
func TestSaturatedRelayPoolDoesNotDelayWrites(t *testing.T) {
	t.Parallel()
	op := slowOp("t:write", 0, nil)
	r := newRig(t, op)
	u, _ := url.Parse("http://127.0.0.1:1/django")
	r.cfg.NotificationKey, r.cfg.DjangoWebhookURL = "k", u
	r.cfg.WorkerConcurrency, r.cfg.RelayConcurrency = 2, 3
	reg := prometheus.NewRegistry()
	w, err := New(Deps{Config: r.cfg, Log: r.log, Redis: r.rdb, Registry: reg, Ops: registry(op), ShutdownTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	w.handleOn(w.relayPool, "t:deliver", asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}), nil)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	defer close(release)

	aq := asynq.NewClientFromRedisClient(r.rdb)
	for range 10 {
		if _, err := aq.Enqueue(asynq.NewTask("t:deliver", nil), asynq.Queue(jobs.QueueRelay)); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the relay pool to be full (its in-flight gauge at its concurrency).
	deadline := time.Now().Add(10 * time.Second)
	for gauge(t, reg, "proxy_worker_pool_in_flight", poolRelay) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("relay pool never saturated")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	e, err := jobs.Enqueue[any](context.Background(), r.client, op, nil, jobs.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.waitState(t, e.ID, jobs.StateSucceeded)
	t.Logf("write job done in %s with the relay pool saturated", time.Since(start))
	if got := gauge(t, reg, "proxy_worker_pool_in_flight", poolRelay); got != 3 {
		t.Fatalf("relay pool in flight %v, want 3 (still blocked)", got)
	}
	for pool, want := range map[string]float64{poolWrite: 2, poolRelay: 3} {
		if got := gauge(t, reg, "proxy_worker_pool_concurrency", pool); got != want {
			t.Errorf("%s pool concurrency %v, want %v", pool, got, want)
		}
	}
}

// With the relay off there is no relay pool: nothing takes its queues.
func TestRelayOffHasNoRelayPool(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	reg := prometheus.NewRegistry()
	w := r.worker(t, time.Second, reg)
	defer w.Shutdown()
	if w.relayPool != nil {
		t.Fatal("relay pool built with the relay off")
	}
	rec := httptest.NewRecorder()
	w.OpsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `proxy_worker_pool_concurrency{pool="write"} 2`) || strings.Contains(body, `pool="relay"`) {
		t.Fatalf("metrics:\n%s", body)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name, pool string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" && l.GetValue() == pool {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func TestAdaptiveLimitOfWriteCalls(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		on      bool
		metrics string // in /metrics when on
	}{
		{name: "on: write jobs carry the limit, capped by WORKER_CONCURRENCY, and /metrics shows it", on: true,
			metrics: `proxy_adaptive_limit_max{limiter="prefect_writes"} 2`},
		{name: "off: no limit, no metric"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			carried := make(chan bool, 1)
			op := jobs.Op[any]{Kind: "t:carries", Queue: jobs.QueueDefault,
				Work: func(ctx context.Context, _ any, _ jobs.Run) (any, error) {
					carried <- adaptive.FromContext(ctx) != nil
					return "ok", nil
				}}
			r := newRig(t, op)
			r.cfg.WorkerAdaptiveLimit = tc.on
			reg := prometheus.NewRegistry()
			w := r.worker(t, time.Second, reg, op)
			defer w.Shutdown()
			if _, err := jobs.Enqueue[any](context.Background(), r.client, op, nil, jobs.EnqueueOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := <-carried; got != tc.on {
				t.Errorf("job's context carries a limiter: %v, want %v", got, tc.on)
			}
			rec := httptest.NewRecorder()
			w.OpsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			body := rec.Body.String()
			if tc.on && !strings.Contains(body, tc.metrics) {
				t.Errorf("metrics lack %q:\n%s", tc.metrics, body)
			}
			if !tc.on && strings.Contains(body, "proxy_adaptive_") {
				t.Errorf("adaptive metrics with the limit off:\n%s", body)
			}
		})
	}
}
