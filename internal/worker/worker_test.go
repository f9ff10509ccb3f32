package worker

import (
	"bytes"
	"context"
	"encoding/json"
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
	opt    asynq.RedisConnOpt
	client *jobs.Client
	cfg    config.Config
	log    *logrus.Logger
}

func newRig(t *testing.T, ops ...jobs.Op) *rig {
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
	c, err := jobs.NewClient(context.Background(), rdb, jobs.ClientConfig{Key: cfg.JobEncryptionKey, Ops: ops,
		MaxAttempts: 3, Retention: time.Hour, PollInterval: 100 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &rig{opt: opt, client: c, cfg: cfg, log: log}
}

func (r *rig) worker(t *testing.T, shutdown time.Duration, reg *prometheus.Registry, ops ...jobs.Op) *Worker {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	w, err := New(Deps{Config: r.cfg, Log: r.log, Redis: r.opt, Registry: reg, Ops: ops, ShutdownTimeout: shutdown})
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

func slowOp(name string, d time.Duration, started chan<- struct{}) jobs.Op {
	return jobs.Op{Name: name, Queue: jobs.QueueDefault,
		Run: func(ctx context.Context, _ json.RawMessage, _ string) (any, error) {
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
	e, err := r.client.Enqueue(context.Background(), op, nil, jobs.EnqueueOptions{})
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
	e, err := r.client.Enqueue(context.Background(), stuck, nil, jobs.EnqueueOptions{})
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
