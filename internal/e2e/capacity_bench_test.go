package e2e

// BenchmarkCapacity measures what docs/SCALING.md sizes from: a worker's job
// and notification throughput, Redis memory per retained job and per
// notification, and Redis connections per process. It runs the real api and
// worker binaries on a real redis-server, with a fast fake Prefect (create
// flow run answers at once) so the proxy, not Prefect, is what is measured.
//
//	go test -run '^$' -bench Capacity -benchtime 1x -v ./internal/e2e/
//
// CAPACITY_N sets how many jobs and notifications (default 2000). It prints
// numbers and never fails on them.

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func BenchmarkCapacity(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("CAPACITY_N")); err == nil && v > 0 {
		n = v
	}
	var created atomic.Int64
	prefect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/create_flow_run") {
			created.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]string{"id": uuid.NewString(), "name": "bench-run"})
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer prefect.Close()

	for b.Loop() {
		rs := testenv.RedisFull(b)
		dj := testenv.NewDjango(b, relayDjangoKey)
		inKey := "bench-inbound"
		env := benchEnv(rs.URL, prefect.URL+"/api", dj, inKey)
		base := info(b, rs.Addr)
		api := testenv.StartAPI(b, env)
		afterAPI := info(b, rs.Addr)

		// Jobs: queue n with no worker running, then time one worker draining them.
		dep := uuid.NewString()
		stopSampling, apiPeak := sampleClients(b, rs.Addr)
		parallel(n, 16, func(i int) {
			o := do("async", "", "POST", api.URL+"/proxy/deployments/"+dep+"/flow_run",
				map[string]any{"config": map[string]any{"org_slug": "bench", "i": i}}, "Prefer", "respond-async")
			if o.status != 202 {
				b.Errorf("enqueue: %d %s %s", o.status, o.body, o.err)
			}
		})
		stopSampling()
		queued := info(b, rs.Addr)
		start := time.Now()
		worker := testenv.StartWorker(b, env)
		afterWorker := info(b, rs.Addr)
		peakClients := waitDrained(b, rs.Addr, "critical", 5*time.Minute)
		jobsDur := time.Since(start)
		done := info(b, rs.Addr)
		if got := created.Load(); got < int64(n) {
			b.Errorf("Prefect saw %d creations for %d jobs", got, n)
		}
		worker.Stop(10 * time.Second)

		// Notifications: the same, delivered to the test Django.
		beforeNotes := info(b, rs.Addr)
		parallel(n, 16, func(i int) {
			run := uuid.NewString()
			o := do("notify", run, "POST", api.URL+"/webhooks/v1/notification/",
				notification(run, "Completed", "COMPLETED", time.Now()), "X-Notification-Key", inKey)
			if o.status != 202 {
				b.Errorf("notify: %d %s %s", o.status, o.body, o.err)
			}
		})
		notesQueued := info(b, rs.Addr)
		start = time.Now()
		testenv.StartWorker(b, env)
		if !dj.WaitFor(5*time.Minute, func(reqs []testenv.DjangoRequest) bool { return len(reqs) >= n }) {
			b.Fatalf("Django got %d of %d notifications", len(dj.Requests()), n)
		}
		notesDur := time.Since(start)
		waitDrained(b, rs.Addr, "relay", time.Minute)
		notesDone := info(b, rs.Addr)

		perK := func(after, before int64) float64 { return float64(after-before) / float64(n) * 1000 / 1024 }
		b.ReportMetric(float64(n)/jobsDur.Seconds(), "jobs/s/worker")
		b.ReportMetric(float64(n)/notesDur.Seconds(), "notifications/s/worker")
		b.ReportMetric(perK(done.mem, afterAPI.mem), "KiB/1000-retained-jobs")
		b.ReportMetric(perK(notesDone.mem, beforeNotes.mem), "KiB/1000-delivered-notifications")
		b.Logf("n=%d; one worker (WORKER_CONCURRENCY=10) against a fake Prefect answering at once", n)
		b.Logf("jobs: %d in %s = %.0f jobs/s per worker", n, jobsDur.Round(time.Millisecond), float64(n)/jobsDur.Seconds())
		b.Logf("notifications: %d in %s = %.0f notifications/s per worker", n, notesDur.Round(time.Millisecond), float64(n)/notesDur.Seconds())
		b.Logf("Redis memory: %.0f KiB per 1000 queued jobs (sealed payloads), %.0f KiB per 1000 retained finished jobs (payload + sealed answer, kept JOB_RETENTION)",
			perK(queued.mem, afterAPI.mem), perK(done.mem, afterAPI.mem))
		b.Logf("Redis memory: %.0f KiB per 1000 queued notifications, %.0f KiB per 1000 delivered (dedupe keys, kept 7 days)",
			perK(notesQueued.mem, beforeNotes.mem), perK(notesDone.mem, beforeNotes.mem))
		b.Logf("Redis connections: api idle %d, api under 16 concurrent writers %d; a worker idle %d, api + worker while the worker drained %d (its own INFO connection excluded)",
			afterAPI.clients-base.clients, *apiPeak-base.clients, afterWorker.clients-afterAPI.clients, peakClients-base.clients)
	}
}

// benchEnv configures an api and a worker for a benchmark on a real Redis
// with a fake Prefect, the relay on (delivering to dj) and quiet logs.
func benchEnv(redisURL, prefectAPI string, dj *testenv.Django, inboundKey string) map[string]string {
	return map[string]string{
		"REDIS_URL": redisURL, "JOB_ENCRYPTION_KEY": testJobKey, "PREFECT_API_URL": prefectAPI,
		"RELAY_INBOUND_KEY": inboundKey, "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": relayDjangoKey,
		"DJANGO_WEBHOOK_URL": dj.URL, "RELAY_RECONCILE_INTERVAL": "0", "LOG_LEVEL": "warn",
	}
}

// sampleClients records the most connected clients until stop is called.
func sampleClients(tb testing.TB, addr string) (stop func(), peak *int64) {
	peak = new(int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			r, err := testenv.Command(addr, "INFO", "clients")
			if err == nil && len(r) == 1 {
				for _, line := range strings.Split(r[0], "\r\n") {
					if v, ok := strings.CutPrefix(line, "connected_clients:"); ok {
						if c, _ := strconv.ParseInt(v, 10, 64); c-1 > *peak {
							*peak = c - 1
						}
					}
				}
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }, peak
}

// parallel runs f(0..n-1) on c goroutines.
func parallel(n, c int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

type redisInfo struct{ mem, clients int64 }

// info reads used_memory and connected_clients (minus this connection).
func info(tb testing.TB, addr string) redisInfo {
	tb.Helper()
	r, err := testenv.Command(addr, "INFO")
	if err != nil || len(r) != 1 {
		tb.Fatalf("INFO: %v", err)
	}
	var out redisInfo
	for _, line := range strings.Split(r[0], "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "used_memory":
			out.mem, _ = strconv.ParseInt(v, 10, 64)
		case "connected_clients":
			out.clients, _ = strconv.ParseInt(v, 10, 64)
			out.clients--
		}
	}
	return out
}

// waitDrained waits until a queue has nothing pending, active or waiting to
// retry, and returns the most clients seen meanwhile.
func waitDrained(tb testing.TB, addr, queue string, d time.Duration) int64 {
	tb.Helper()
	deadline := time.Now().Add(d)
	var peak int64
	for {
		if c := info(tb, addr).clients; c > peak {
			peak = c
		}
		left := 0
		for _, k := range []string{"pending", "active"} {
			r, err := testenv.Command(addr, "LLEN", "asynq:{"+queue+"}:"+k)
			if err == nil && len(r) == 1 {
				v, _ := strconv.Atoi(r[0])
				left += v
			}
		}
		r, err := testenv.Command(addr, "ZCARD", "asynq:{"+queue+"}:retry")
		if err == nil && len(r) == 1 {
			v, _ := strconv.Atoi(r[0])
			left += v
		}
		if left == 0 {
			return peak
		}
		if time.Now().After(deadline) {
			tb.Fatalf("queue %s still has %d jobs after %s", queue, left, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
