package httpapi

// Benchmarks of the write path (docs/BENCHMARKS.md, "Jobs"). They print
// numbers and never fail on a timing. They need redis-server on PATH.
//
//	go test -run '^$' -bench 'Jobs' -benchtime 20000x ./internal/httpapi/

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
	"github.com/DalgoT4D/prefect-proxy-go/internal/worker"
	"github.com/DalgoT4D/prefect-proxy-go/internal/writes"
)

// jobsBench is a real api (loopback TCP), a real redis-server, the real
// flowrun:create op, and a fast fake Prefect.
type jobsBench struct {
	api     string
	prefect *httptest.Server
	pc      *prefect.Client
	opt     config.Config
	redis   *testenv.RedisServer
	svc     *proxy.Service
	ops     *writes.Ops
	rdb     redis.UniversalClient
	client  *jobs.Client
	created atomic.Int64
	log     *logrus.Logger
}

func newJobsBench(b *testing.B) *jobsBench {
	b.Helper()
	rs, err := testenv.StartRedis()
	if err != nil {
		b.Skipf("no redis-server: %v", err)
	}
	b.Cleanup(rs.Stop)
	jb := &jobsBench{redis: rs}
	jb.prefect = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if !strings.HasSuffix(r.URL.Path, "/create_flow_run") {
			http.NotFound(w, r)
			return
		}
		n := jb.created.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"%08d-0000-4000-8000-000000000000","name":"bench-run-%d"}`, n, n)
	}))
	b.Cleanup(jb.prefect.Close)
	u, _ := url.Parse(jb.prefect.URL + "/api")
	jb.pc = prefect.New(prefect.Config{BaseURL: u, Timeout: 10 * time.Second})
	jb.log = logrus.New()
	jb.log.SetOutput(io.Discard)
	jb.svc = proxy.New(jb.pc, jb.log)
	jb.ops = writes.New(jb.svc)
	jb.opt = config.Config{JobWaitTimeout: 25 * time.Second, JobRetention: time.Hour, JobMaxAttempts: 10,
		WorkerConcurrency: 10, JobEncryptionKey: bytes.Repeat([]byte{9}, 32)}

	opt, err := jobs.RedisOpt(rs.URL)
	if err != nil {
		b.Fatal(err)
	}
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	b.Cleanup(func() { _ = rdb.Close() })
	jb.rdb = rdb
	jc, err := jobs.NewClient(context.Background(), rdb, jobs.ClientConfig{Key: jb.opt.JobEncryptionKey,
		Ops: jb.ops.Registry(), MaxAttempts: 10, Retention: time.Hour, Log: jb.log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(jc.Close)
	jb.client = jc
	h := New(Deps{Config: jb.opt, Log: jb.log, Proxy: jb.svc, Metrics: NewMetrics(prometheus.NewRegistry()), Jobs: jc, Ops: jb.ops})
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Serve(ctx, "127.0.0.1:0", h, LimitsFor(jb.opt), func(a net.Addr) { addr <- a.String() })
	}()
	b.Cleanup(func() { cancel(); <-done })
	jb.api = "http://" + <-addr
	return jb
}

// startWorker starts an in-process worker on the bench's Redis.
func (jb *jobsBench) startWorker(b *testing.B, poll time.Duration) *worker.Worker {
	b.Helper()
	w, err := worker.New(worker.Deps{Config: jb.opt, Log: jb.log, Redis: jb.rdb, Registry: prometheus.NewRegistry(),
		Ops: jb.ops.Registry(), PollInterval: poll})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	return w
}

var benchDep = uuid.NewString()

func benchHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 512, 512
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

func post(hc *http.Client, u string, prefer string) (int, error) {
	req, _ := http.NewRequest("POST", u, strings.NewReader(`{"config":{"org_slug":"bench"}}`))
	req.Header.Set("Content-Type", "application/json")
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	i := int(float64(len(lat))*p+0.5) - 1
	return lat[max(0, min(i, len(lat)-1))]
}

// BenchmarkJobsAcceptAsync: POST .../flow_run with Prefer: respond-async from
// 64 concurrent keep-alive clients; each answer is a 202 once the sealed job
// is in Redis. No worker runs, so this is the api's accept rate alone.
func BenchmarkJobsAcceptAsync(b *testing.B) {
	jb := newJobsBench(b)
	hc := benchHTTPClient()
	u := jb.api + "/proxy/deployments/" + benchDep + "/flow_run"
	if st, err := post(hc, u, "respond-async"); err != nil || st != 202 {
		b.Fatalf("warm-up: %d %v", st, err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var bad atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			s := time.Now()
			st, err := post(hc, u, "respond-async")
			mine = append(mine, time.Since(s))
			if err != nil || st != 202 {
				bad.Add(1)
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	el, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	if bad.Load() > 0 {
		b.Fatalf("%d requests were not 202", bad.Load())
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "jobs/s")
	b.ReportMetric(float64(pct(lat, .5).Microseconds()), "p50-us")
	b.ReportMetric(float64(pct(lat, .99).Microseconds()), "p99-us")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/job")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkJobsWorkerThroughput: b.N jobs queued first, then ONE worker
// (WORKER_CONCURRENCY 10, and 50) drains them against the fast fake Prefect.
func BenchmarkJobsWorkerThroughput(b *testing.B) {
	for _, conc := range []int{10, 50} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			jb := newJobsBench(b)
			jb.opt.WorkerConcurrency = conc
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				if _, err := jobs.Enqueue(ctx, jb.client, jb.ops.FlowRunCreate, proxy.FlowRunCreatePayload{DeploymentID: benchDep,
					Params: map[string]any{}}, jobs.EnqueueOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			cpu0, t0 := cpuTime(), time.Now()
			w := jb.startWorker(b, 0)
			for jb.created.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			el, cpu := time.Since(t0), cpuTime()-cpu0
			b.StopTimer()
			w.Shutdown()
			b.ReportMetric(float64(b.N)/el.Seconds(), "jobs/s/worker")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/job")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkJobsSyncOverhead: one client, one request at a time. "inline"
// calls the fake Prefect's create_flow_run directly with the proxy's client;
// "job" sends the same write through the api (enqueue, an idle worker picks
// it up, runs it, publishes; the api wakes and answers). The difference of
// the p50s is what the job system adds to a synchronous write.
func BenchmarkJobsSyncOverhead(b *testing.B) {
	b.Run("inline", func(b *testing.B) {
		jb := newJobsBench(b)
		ctx := context.Background()
		var lat []time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s := time.Now()
			var out map[string]any
			if err := jb.pc.Do(ctx, "POST", "/deployments/"+benchDep+"/create_flow_run",
				map[string]any{"parameters": map[string]any{}}, &out, true); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(s))
		}
		b.StopTimer()
		b.ReportMetric(float64(pct(lat, .5).Microseconds()), "p50-us")
		b.ReportMetric(float64(pct(lat, .99).Microseconds()), "p99-us")
		b.ReportMetric(0, "ns/op")
	})
	for _, poll := range []time.Duration{20 * time.Millisecond, 5 * time.Millisecond, time.Millisecond} {
		b.Run("job/poll="+poll.String(), func(b *testing.B) {
			jb := newJobsBench(b)
			w := jb.startWorker(b, poll)
			defer w.Shutdown()
			hc := benchHTTPClient()
			u := jb.api + "/proxy/deployments/" + benchDep + "/flow_run"
			if st, err := post(hc, u, ""); err != nil || st != 200 {
				b.Fatalf("warm-up: %d %v", st, err)
			}
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// An idle gap, as between a user's clicks: the worker is
				// polling an empty queue when the job arrives.
				time.Sleep(time.Duration(i%7) * time.Millisecond)
				s := time.Now()
				st, err := post(hc, u, "")
				if err != nil || st != 200 {
					b.Fatalf("%d %v", st, err)
				}
				lat = append(lat, time.Since(s))
			}
			b.StopTimer()
			b.ReportMetric(float64(pct(lat, .5).Microseconds()), "p50-us")
			b.ReportMetric(float64(pct(lat, .99).Microseconds()), "p99-us")
			b.ReportMetric(0, "ns/op")
		})
	}
}
