package jobs

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// BenchmarkQueuedToStarted measures how long a task waits between the
// api's enqueue call and the start of its handler in an idle worker, on a
// real redis-server: the api and the worker each on their own Redis
// client, as in two processes, with 0–20 ms of idleness before each task.
//
//	go test -run '^$' -bench QueuedToStarted -benchtime 500x ./internal/jobs/
//
// wakeup is the default (jobs.Wakeup, WORKER_POLL_INTERVAL 1 s); poll=5ms
// is the previous default (asynq polling every 5 ms, no wake-up). It prints
// p50/p99 and never fails on them.
func BenchmarkQueuedToStarted(b *testing.B) {
	for _, c := range []struct {
		name   string
		wakeup bool
		poll   time.Duration
	}{
		{"wakeup", true, DefaultPollInterval},
		{"poll=5ms", false, 5 * time.Millisecond},
	} {
		b.Run(c.name, func(b *testing.B) {
			url := testenv.Redis(b)
			wrk, err := Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			defer wrk.Close()
			api, err := Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			defer api.Close()
			cfg := ServerConfig{Concurrency: 10, Log: quietLog(), PollInterval: c.poll, ShutdownTimeout: time.Second}
			if c.wakeup {
				cfg.Wakeup = NewWakeup(wrk, quietLog())
				defer cfg.Wakeup.Close()
				NewWakeup(api, quietLog())
			}
			cfg.Queues = map[string]int{QueueCritical: 6, QueueDefault: 3}
			srv := NewServer(wrk, cfg)
			started := make(chan time.Time, 1)
			if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
				started <- time.Now()
				return nil
			})); err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			cl := asynq.NewClientFromRedisClient(api)
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				time.Sleep(time.Duration(rand.IntN(20_000)) * time.Microsecond)
				t0 := time.Now()
				if _, err := cl.Enqueue(asynq.NewTask("bench", nil), asynq.Queue(QueueCritical)); err != nil {
					b.Fatal(err)
				}
				select {
				case t1 := <-started:
					lat = append(lat, t1.Sub(t0))
				case <-time.After(30 * time.Second):
					b.Fatal("task not started within 30 s")
				}
			}
			slices.Sort(lat)
			pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
			b.ReportMetric(float64(pct(0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
			b.Logf("%s: queued→started over %d tasks: p50 %s, p99 %s, max %s", c.name, len(lat),
				pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
		})
	}
}
