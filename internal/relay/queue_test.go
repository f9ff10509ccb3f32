package relay

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// TestQueueRetriesThenArchives runs deliveries through a real asynq server:
// Django down → retried on the schedule → delivered once it is back; Django
// rejecting → archived at once, listed as a dead letter, replayed.
func TestQueueRetriesThenArchives(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	schedule := []time.Duration{50 * time.Millisecond}
	mux := asynq.NewServeMux()
	mux.Handle(TaskType, r.h)
	srv := jobs.NewServer(r.rdb, jobs.ServerConfig{
		Concurrency: 4, Log: r.h.Log, ShutdownTimeout: time.Second,
		RetryDelay: func(n int, err error, _ *asynq.Task) time.Duration { return RetryDelay(schedule, n, err) },
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	q := asynq.NewClientFromRedisClient(r.rdb)
	admin := &Admin{Inspector: asynq.NewInspectorFromRedisClient(r.rdb)}
	ctx := context.Background()

	down := true
	r.django.setStatus(func(int) int {
		if down {
			return 503
		}
		return 200
	})
	n := note("Completed", t0)
	if ok, err := Enqueue(ctx, q, n, 100); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, _ := Enqueue(ctx, q, n, 100); ok {
		t.Fatal("a copy of a queued notification was queued again")
	}
	time.Sleep(700 * time.Millisecond)
	r.django.setStatus(func(int) int { return 200 })
	waitFor(t, 10*time.Second, func() bool { return len(r.django.received()) == 1 })

	// Rejected: archived at once, then replayed once Django accepts.
	r.django.setStatus(func(int) int { return 401 })
	failed := note("Failed", t0.Add(time.Hour))
	if _, err := Enqueue(ctx, q, failed, 100); err != nil {
		t.Fatal(err)
	}
	var dead []DeadLetter
	waitFor(t, 10*time.Second, func() bool {
		dead, _, _ = admin.List(1, 10)
		return len(dead) == 1
	})
	if dead[0].WebhookID != WebhookID(failed) || dead[0].State != "Failed" || dead[0].LastError == "" {
		t.Fatalf("dead letter %+v", dead[0])
	}
	r.django.setStatus(nil)
	if err := admin.Replay(dead[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return len(r.django.received()) == 2 })
	got := r.django.received()
	if got[1].State != "Failed" || got[1].WebhookID != WebhookID(failed) {
		t.Fatalf("Django received %+v", got)
	}
	if err := admin.Replay("nope"); err != ErrNotFound {
		t.Fatalf("replay of an unknown id: %v", err)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not met in time")
}
