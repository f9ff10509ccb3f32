package relay_test

// Benchmarks of the relay. They print numbers and never fail on a timing.
//
//	go test -run '^$' -bench 'Relay' -benchtime 1x ./internal/relay/
//
// Each uses a real redis-server (testenv) and the real ingress handler
// (httpapi.New) on loopback TCP; deliveries run in a real asynq server with
// the relay's handler, to an httptest "Django".

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

const benchKey = "bench-key"

type benchRig struct {
	api    *httptest.Server
	rdb    redis.UniversalClient
	django *testenv.Django
	cfg    config.Config
	log    *logrus.Logger
}

func newBenchRig(b *testing.B, schedule string) *benchRig {
	b.Helper()
	redisURL := testenv.Redis(b)
	dj := testenv.NewDjango(b, "dj")
	cfg, err := config.Load(func(k string) string {
		return map[string]string{
			"REDIS_URL": redisURL, "JOB_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
			"RELAY_INBOUND_KEY": benchKey, "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "dj",
			"DJANGO_WEBHOOK_URL": dj.URL, "RELAY_RETRY_SCHEDULE": schedule,
		}[k]
	})
	if err != nil {
		b.Fatal(err)
	}
	opt, _ := jobs.RedisOpt(redisURL)
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	b.Cleanup(func() { rdb.Close() })
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetFormatter(&logrus.JSONFormatter{})
	reg := prometheus.NewRegistry()
	api := httptest.NewServer(httpapi.New(httpapi.Deps{
		Config: cfg, Log: log, Metrics: httpapi.NewMetrics(reg), Relay: relay.NewAPI(cfg, rdb, log, reg),
	}))
	b.Cleanup(api.Close)
	return &benchRig{api: api, rdb: rdb, django: dj, cfg: cfg, log: log}
}

// startWorker runs the relay's delivery handler in an asynq server as
// internal/worker does (same server settings, WORKER_CONCURRENCY=10).
func (r *benchRig) startWorker(b *testing.B) {
	w := relay.NewWorker(r.cfg, r.rdb, nil, r.log, nil)
	mux := asynq.NewServeMux()
	mux.Handle(relay.TaskType, w.Handler)
	srv := jobs.NewServer(r.rdb, jobs.ServerConfig{Concurrency: r.cfg.WorkerConcurrency, Log: r.log, RetryDelay: w.RetryDelay})
	if err := srv.Start(mux); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
}

func templateBody(run string, ts time.Time) []byte {
	return []byte(`{"flow_run_id": "` + run + `", "flow_run_name": "bench_run.1", "state_name": "Completed", "state_type": "COMPLETED", "state_timestamp": "` +
		ts.UTC().Format("2006-01-02 15:04:05.999999-07:00") + `", "event_id": "` + uuid.NewString() + `", "event": "prefect.flow-run.Completed"}`)
}

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}

func (r *benchRig) post(body []byte) error {
	req, _ := http.NewRequest("POST", r.api.URL+"/webhooks/v1/notification/", bytes.NewReader(body))
	req.Header.Set("X-Notification-Key", benchKey)
	resp, err := benchClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkRelayIngest: closed loop, 32 clients, each POST durably queued in
// Redis before its 202.
func BenchmarkRelayIngest(b *testing.B) {
	r := newBenchRig(b, "5s")
	n := max(b.N, 20000)
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = templateBody(uuid.NewString(), time.Now())
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < 32; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := r.post(bodies[i]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	info, _ := asynq.NewInspectorFromRedisClient(r.rdb).GetQueueInfo(jobs.QueueRelay)
	if info == nil || info.Pending != n {
		b.Fatalf("queued %+v, want %d", info, n)
	}
	b.ReportMetric(float64(n)/el.Seconds(), "ingests/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRelayLatency: open loop at 500 notifications/s for 10 s; the time
// from sending the webhook to Django receiving the delivery.
func BenchmarkRelayLatency(b *testing.B) {
	r := newBenchRig(b, "5s")
	r.startWorker(b)
	const rate, dur = 500, 10 * time.Second
	total := int(rate * dur / time.Second)
	sent := make(map[string]time.Time, total)
	var mu sync.Mutex
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < total; i++ {
		<-tick.C
		run := uuid.NewString()
		body := templateBody(run, time.Now())
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			sent[run] = time.Now()
			mu.Unlock()
			if err := r.post(body); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for len(r.django.Accepted()) < total && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	var lat []time.Duration
	for _, req := range r.django.Accepted() {
		if t, ok := sent[req.FlowRunID]; ok {
			lat = append(lat, req.At.Sub(t))
		}
	}
	if len(lat) != total {
		b.Fatalf("Django received %d of %d", len(lat), total)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRelayDrain: Django answers 503 while 10 000 notifications arrive
// (each is tried and put on RELAY_RETRY_SCHEDULE=1s); then Django returns.
// Reported: the time from Django's return to the last delivery.
func BenchmarkRelayDrain(b *testing.B) {
	r := newBenchRig(b, "1s")
	r.django.RespondWith(func(int) int { return http.StatusServiceUnavailable })
	r.startWorker(b)
	const total = 10000
	var wg sync.WaitGroup
	var next atomic.Int64
	for c := 0; c < 32; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				if err := r.post(templateBody(uuid.NewString(), time.Now())); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Let every task fail once (the backlog is then in asynq's retry set).
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if info, err := insp.GetQueueInfo(jobs.QueueRelay); err == nil && info.Pending == 0 && info.Active == 0 {
			break
		}
	}
	b.ResetTimer()
	start := time.Now()
	r.django.RespondWith(nil)
	for deadline := time.Now().Add(5 * time.Minute); len(r.django.Accepted()) < total && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	if got := len(r.django.Accepted()); got != total {
		b.Fatalf("Django received %d of %d", got, total)
	}
	b.ReportMetric(el.Seconds(), "drain-s")
	b.ReportMetric(total/el.Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op")
}
