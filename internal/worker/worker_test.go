package worker

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

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
