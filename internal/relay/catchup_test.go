package relay

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// catchUpRig is the rig with a real asynq server whose retry step (a
// minute) is far longer than the tests wait: anything delivered after Django
// returns was moved forward by the catch-up.
func catchUpRig(t *testing.T, probe time.Duration) (*rig, *asynq.Client, *atomic.Bool, *atomic.Int32) {
	t.Helper()
	r := newRig(t)
	// A real redis-server: the leases must expire (miniredis's TTLs do not
	// run by themselves).
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	r.rdb = redis.NewClient(opt)
	t.Cleanup(func() { _ = r.rdb.Close() })
	r.h.Store = NewStore(r.rdb)
	r.h.CatchUp = NewCatchUp(r.rdb, r.h.Log)
	r.h.CatchUp.ProbeInterval = probe
	r.h.CatchUp.Cooldown = 200 * time.Millisecond
	var down atomic.Bool
	var calls atomic.Int32
	down.Store(true)
	r.django.setStatus(func(int) int {
		calls.Add(1)
		if down.Load() {
			return 503
		}
		return 200
	})
	schedule := []time.Duration{time.Minute}
	mux := asynq.NewServeMux()
	mux.Handle(TaskType, r.h)
	srv := jobs.NewServer(r.rdb, jobs.ServerConfig{
		Concurrency: 4, Log: r.h.Log, ShutdownTimeout: time.Second,
		RetryDelay: func(n int, err error, _ *asynq.Task) time.Duration { return RetryDelay(schedule, n, err) },
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.h.CatchUp.run(ctx)
	return r, asynq.NewClientFromRedisClient(r.rdb), &down, &calls
}

// enqueueRuns queues Pending, Running and Completed for each of runs runs
// and waits until every one has been tried once: failed and waiting in
// retry, or dropped.
func enqueueRuns(t *testing.T, r *rig, q *asynq.Client, runs int) []Notification {
	t.Helper()
	var ns []Notification
	for i := range runs {
		for j, state := range []string{"Pending", "Running", "Completed"} {
			n := note(state, t0.Add(time.Duration(i)*time.Minute+time.Duration(j)*time.Second))
			n.FlowRunID = fmt.Sprintf("3b55ee18-7511-4ede-abba-%012d", i)
			n.Received = time.Now().Add(-time.Hour)
			if _, err := Enqueue(context.Background(), q, n, 100); err != nil {
				t.Fatal(err)
			}
			ns = append(ns, n)
		}
	}
	in := asynq.NewInspectorFromRedisClient(r.rdb)
	waitFor(t, 20*time.Second, func() bool {
		// Some are dropped as stale instead: the store admits a run's
		// Completed (raising its mark) before Django fails it.
		info, err := in.GetQueueInfo(jobs.QueueRelay)
		return err == nil && info.Retry > 0 && info.Retry == info.Size && info.Active == 0
	})
	return ns
}

// Django down, then up: everything waiting in retry (a minute away) is
// delivered at once, each state change once, each run's states in order.
func TestCatchUpDeliversWaitingRetriesWhenDjangoReturns(t *testing.T) {
	t.Parallel()
	r, q, down, _ := catchUpRig(t, 100*time.Millisecond)
	ns := enqueueRuns(t, r, q, 10)
	down.Store(false)
	// Delivered, or dropped as stale behind its run's Completed: nothing
	// stays waiting for the minute-long retry step.
	in := asynq.NewInspectorFromRedisClient(r.rdb)
	waitFor(t, 20*time.Second, func() bool {
		info, err := in.GetQueueInfo(jobs.QueueRelay)
		return err == nil && info.Retry == 0 && info.Pending == 0 && info.Active == 0
	})
	got := r.django.received()
	seen := map[string]bool{}
	last := map[string]time.Time{}
	ts := map[string]time.Time{}
	for _, n := range ns {
		ts[WebhookID(n)] = n.Timestamp
	}
	completed := 0
	for _, g := range got {
		if seen[g.WebhookID] {
			t.Fatalf("delivered twice: %+v", g)
		}
		seen[g.WebhookID] = true
		if at := ts[g.WebhookID]; at.Before(last[g.ID]) {
			t.Fatalf("run %s: %s delivered after a later state", g.ID, g.State)
		} else {
			last[g.ID] = at
		}
		if g.State == "Completed" {
			completed++
		}
	}
	if completed != 10 {
		t.Fatalf("%d runs' Completed delivered, want 10: %+v", completed, got)
	}
}

// A Django that keeps failing gets one probe per interval, not every
// waiting delivery again.
func TestCatchUpKeepsTheScheduleWhileDjangoFails(t *testing.T) {
	t.Parallel()
	r, q, _, calls := catchUpRig(t, 200*time.Millisecond)
	ns := enqueueRuns(t, r, q, 5)
	before := calls.Load()
	time.Sleep(2 * time.Second)
	extra := calls.Load() - before
	// At most one probe per 200 ms (plus one for a tick at the edges).
	if extra > 11 {
		t.Fatalf("%d requests to a failing Django in 2 s with %d deliveries waiting", extra, len(ns))
	}
	t.Logf("%d probes in 2 s", extra)
}
