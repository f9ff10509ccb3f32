package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// Benchmarks of the read path. They print numbers (b.ReportMetric) and assert
// only correctness (status 200, the same answer as the baseline), never time.
//
//	go test -run '^$' -bench 'Poll/upstream=fast-fake' -benchtime 4000x ./internal/bench/
//	go test -run '^$' -bench 'History' -benchtime 10x ./internal/bench/
//	BENCH_PREFECT_URL=... go test -run '^$' -bench 'Poll/upstream=prefect' -benchtime 400x ./internal/bench/
//
// (`make bench` runs these; results and how to read them: docs/BENCHMARKS.md.)
//
// Environment:
//	BENCH_PREFECT_URL         a real Prefect API root (e.g. http://127.0.0.1:4299/api):
//	                          runs the upstream=prefect cases (skipped otherwise); the
//	                          world is seeded there once and reused (see realUpstream)
//	BENCH_PREFECT_DEPLOYMENT  use this seeded deployment
//	BENCH_API_BINARY          a built cmd/api: runs the proxy=api-binary poll cases against it
//	BENCH_REDIS_URL           the binary's REDIS_URL (unset: embedded Redis and in-process worker)
//	BENCH_LATENCY             per-call latency of the slow fake for History (default 3ms)

const (
	historyRuns = 50
	tasksPerRun = 3
	// pacedRate is the open-loop poll load (each side): well under what the
	// proxy serves on this 2-core machine, far over what Django sends.
	pacedRate = 2000
)

// upstream is a Prefect the proxy and the baseline talk to.
type upstream struct {
	name       string
	api        string   // Prefect API root
	deployment string   // holds historyRuns runs as NewWorld/testenv.SeedHistory build them
	pollIDs    []string // runs to poll, in turn
	fake       *Fake    // nil for a real Prefect
}

func fakeUpstream(b *testing.B, name string, latency time.Duration) upstream {
	w := NewWorld(historyRuns, tasksPerRun)
	f := NewFake(w, latency)
	srv := httptest.NewServer(f)
	b.Cleanup(srv.Close)
	return upstream{name: name, api: srv.URL + "/api", deployment: w.DeploymentID, pollIDs: w.order, fake: f}
}

var (
	realOnce sync.Once
	real     upstream
	realErr  error
)

// realUpstream returns the history world on the Prefect named by
// BENCH_PREFECT_URL, skipping the benchmark when it is unset. The world is
// seeded once and its deployment id cached in a temp file, so repeated runs
// (and the several `go test` runs of `make bench`) reuse it instead of piling
// up runs on a shared server; BENCH_PREFECT_DEPLOYMENT names one explicitly.
func realUpstream(b *testing.B) upstream {
	api := os.Getenv("BENCH_PREFECT_URL")
	if api == "" {
		b.Skip("BENCH_PREFECT_URL is unset")
	}
	realOnce.Do(func() {
		realErr = errors.New("seeding the real Prefect failed (see the first benchmark)")
		real, realErr = loadRealUpstream(b, api)
	})
	if realErr != nil {
		b.Fatal(realErr)
	}
	return real
}

func loadRealUpstream(b *testing.B, api string) (upstream, error) {
	up := upstream{name: "prefect", api: api}
	u, err := url.Parse(api)
	if err != nil {
		return up, err
	}
	pc := prefect.New(prefect.Config{BaseURL: u,
		Retry: prefect.RetryPolicy{Attempts: 10, Base: 200 * time.Millisecond, Max: 3 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cache := filepath.Join(os.TempDir(), "prefect-proxy-bench-"+strings.NewReplacer(":", "_", "/", "_").Replace(api))
	up.deployment = os.Getenv("BENCH_PREFECT_DEPLOYMENT")
	if up.deployment == "" {
		if b, err := os.ReadFile(cache); err == nil {
			up.deployment = strings.TrimSpace(string(b))
		}
	}
	var runs []HistoryRun
	if up.deployment != "" {
		runs, _, err = OneByOneHistory(ctx, pc, up.deployment, historyRuns)
	}
	if up.deployment == "" || err != nil || len(runs) != historyRuns {
		name := "bench-history-" + uuid.NewString()[:8]
		start := time.Now()
		pf, err := testenv.ConnectPrefect(api)
		if err != nil {
			return up, fmt.Errorf("seeding %s: %w", api, err)
		}
		s := pf.SeedHistory(b, name, historyRuns, tasksPerRun)
		up.deployment = s.Deployment.ID
		_ = os.WriteFile(cache, []byte(up.deployment), 0o600)
		fmt.Fprintf(os.Stderr, "bench: seeded %s (deployment %s) on %s in %v\n",
			name, s.Deployment.ID, api, time.Since(start).Round(time.Millisecond))
		if runs, _, err = OneByOneHistory(ctx, pc, up.deployment, historyRuns); err != nil {
			return up, err
		}
	}
	if len(runs) != historyRuns {
		return up, fmt.Errorf("deployment %s has %d terminal runs, want %d", up.deployment, len(runs), historyRuns)
	}
	for _, r := range runs {
		up.pollIDs = append(up.pollIDs, r.ID)
	}
	return up, nil
}

func newClient(api string) *prefect.Client {
	u, err := url.Parse(api)
	if err != nil {
		panic(err)
	}
	return prefect.New(prefect.Config{BaseURL: u})
}

func startProxy(b *testing.B, api string) *Proxy {
	p, err := StartProxy(api, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	return p
}

// BenchmarkPoll compares GET /proxy/flow_runs/{id}/poll through the proxy
// with GET /flow_runs/{id} sent directly to the same upstream, at 1, 16 and
// 64 closed-loop clients. Each sub-benchmark sends b.N requests each way,
// alternating direct and proxy in 4 rounds so that a burst of load from
// elsewhere on the machine hits both sides alike. Requests take the world's
// runs in turn: identical concurrent polls would share one upstream call in
// the proxy (singleflight) and flatter it. A closed loop saturates this
// machine's 2 cores from 16 clients on, so latency there is mostly queueing
// behind CPU; the extra "paced" case (64 clients, open loop at pacedRate)
// shows the latency overhead under a steady load below capacity. ns/op is the
// proxy's mean latency; read the -ms, req/s and cpu-us/req metrics.
func BenchmarkPoll(b *testing.B) {
	hc := NewClient()
	b.Run("upstream=fast-fake", func(b *testing.B) {
		up := fakeUpstream(b, "fast-fake", 0)
		benchPoll(b, hc, up, startProxy(b, up.api))
	})
	b.Run("upstream=prefect", func(b *testing.B) {
		up := realUpstream(b)
		benchPoll(b, hc, up, startProxy(b, up.api))
	})
	// The same against the real cmd/api binary in its own process.
	b.Run("proxy=api-binary", func(b *testing.B) {
		if os.Getenv("BENCH_API_BINARY") == "" {
			b.Skip("BENCH_API_BINARY is unset (any value runs cmd/api, built by internal/testenv, in its own process)")
		}
		up := fakeUpstream(b, "fast-fake", 0)
		p, err := StartBinary(up.api, os.Getenv("BENCH_REDIS_URL"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = p.Close() })
		benchPoll(b, hc, up, p)
	})
}

func benchPoll(b *testing.B, hc *http.Client, up upstream, p *Proxy) {
	var directURLs, proxyURLs []string
	for _, id := range up.pollIDs {
		directURLs = append(directURLs, up.api+"/flow_runs/"+id)
		proxyURLs = append(proxyURLs, p.URL+"/proxy/flow_runs/"+id+"/poll")
	}
	direct, viaProxy := RoundRobin(hc, directURLs, nil), RoundRobin(hc, proxyURLs, nil)
	checkSameJSON(b, hc, directURLs[0], proxyURLs[0])
	type load struct {
		clients int
		rate    float64 // requests/s each side; 0 = closed loop
	}
	loads := []load{{1, 0}, {16, 0}, {64, 0}}
	if up.fake != nil {
		loads = append(loads, load{64, pacedRate})
	}
	for _, l := range loads {
		clients := l.clients
		name := fmt.Sprintf("clients=%d", clients)
		if l.rate > 0 {
			name += fmt.Sprintf("-paced-%.0frps", l.rate)
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			// Warm up: open every keep-alive connection on both hops.
			for _, do := range []func(context.Context) error{direct, viaProxy} {
				if r := Run(ctx, clients, 4*clients+100, do); r.Errors > 0 {
					b.Fatalf("warm-up: %v", r.FirstErr)
				}
			}
			const rounds = 4
			per := max(b.N/rounds, 1)
			var d, pr []Result
			b.ResetTimer()
			for i := 0; i < rounds; i++ {
				d = append(d, RunPaced(ctx, clients, per, l.rate, direct))
				var cpu0 time.Duration
				if p.CPU != nil {
					cpu0 = p.CPU()
				}
				r := RunPaced(ctx, clients, per, l.rate, viaProxy)
				if p.CPU != nil {
					r.CPU += p.CPU() - cpu0 // the proxy's process
				}
				pr = append(pr, r)
			}
			b.StopTimer()
			D, P := Merge(d...), Merge(pr...)
			if D.Errors+P.Errors > 0 {
				b.Fatalf("errors: direct %d (%v), proxy %d (%v)", D.Errors, D.FirstErr, P.Errors, P.FirstErr)
			}
			b.ReportMetric(float64(P.Elapsed.Nanoseconds())*float64(clients)/float64(P.Requests), "ns/op")
			b.ReportMetric(ms(D.P50()), "direct-p50-ms")
			b.ReportMetric(ms(P.P50()), "proxy-p50-ms")
			b.ReportMetric(ms(P.P50()-D.P50()), "overhead-p50-ms")
			b.ReportMetric(ms(D.P99()), "direct-p99-ms")
			b.ReportMetric(ms(P.P99()), "proxy-p99-ms")
			b.ReportMetric(ms(P.P99()-D.P99()), "overhead-p99-ms")
			b.ReportMetric(D.RPS(), "direct-req/s")
			b.ReportMetric(P.RPS(), "proxy-req/s")
			b.ReportMetric(us(D.CPUPerRequest()), "direct-cpu-us/req")
			b.ReportMetric(us(P.CPUPerRequest()), "proxy-cpu-us/req")
			b.ReportMetric(us(P.CPUPerRequest()-D.CPUPerRequest()), "overhead-cpu-us/req")
		})
	}
}

// checkSameJSON fails unless the proxy's answer equals the upstream's (the
// poll route passes Prefect's flow run through untouched).
func checkSameJSON(b *testing.B, hc *http.Client, a, c string) {
	b.Helper()
	get := func(u string) any {
		resp, err := hc.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var v any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		return v
	}
	x, y := get(a), get(c)
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	if string(xb) != string(yb) {
		b.Fatalf("proxy answer differs from upstream:\n%s\n%s", yb, xb)
	}
}

// BenchmarkHistory compares GET /proxy/flow_runs?deployment_id=…&limit=50
// over 50 runs (each with a subflow and task runs) with the Python proxy's
// sequential calls for the same answer (OneByOneHistory), one client, each
// iteration doing both. The fake upstream sleeps BENCH_LATENCY per call, as
// Prefect on SQLite takes a few ms per small read.
func BenchmarkHistory(b *testing.B) {
	latency := 3 * time.Millisecond
	if v := os.Getenv("BENCH_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BENCH_LATENCY: %v", err)
		}
		latency = d
	}
	hc := NewClient()
	b.Run("upstream=fake-"+latency.String(), func(b *testing.B) {
		benchHistory(b, hc, fakeUpstream(b, "fake-"+latency.String(), latency))
	})
	b.Run("upstream=prefect", func(b *testing.B) { benchHistory(b, hc, realUpstream(b)) })
}

func benchHistory(b *testing.B, hc *http.Client, up upstream) {
	ctx := context.Background()
	p := startProxy(b, up.api)
	pc := newClient(up.api)
	route := p.URL + "/proxy/flow_runs?deployment_id=" + up.deployment + "&limit=" + strconv.Itoa(historyRuns)
	checkHistory(b, hc, route, pc, up.deployment)
	viaProxy := Getter(hc, route, nil)
	var prox, one []time.Duration
	var proxyCalls, oneCalls int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := upstreamCalls(up)
		t := time.Now()
		if err := viaProxy(ctx); err != nil {
			b.Fatal(err)
		}
		prox = append(prox, time.Since(t))
		proxyCalls += upstreamCalls(up) - before
		t = time.Now()
		_, calls, err := OneByOneHistory(ctx, pc, up.deployment, historyRuns)
		if err != nil {
			b.Fatal(err)
		}
		one = append(one, time.Since(t))
		oneCalls += int64(calls)
	}
	b.StopTimer()
	P, O := Merge(Result{Latencies: prox}), Merge(Result{Latencies: one})
	b.ReportMetric(float64(P.P50().Nanoseconds()), "ns/op")
	b.ReportMetric(ms(P.P50()), "proxy-p50-ms")
	b.ReportMetric(ms(P.Quantile(1)), "proxy-max-ms")
	b.ReportMetric(ms(O.P50()), "onebyone-p50-ms")
	b.ReportMetric(float64(O.P50())/float64(P.P50()), "speedup-x")
	if up.fake != nil {
		b.ReportMetric(float64(proxyCalls)/float64(b.N), "proxy-calls/op")
	}
	b.ReportMetric(float64(oneCalls)/float64(b.N), "onebyone-calls/op")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func upstreamCalls(up upstream) int64 {
	if up.fake == nil {
		return 0
	}
	return up.fake.Calls()
}

// checkHistory fails unless the route answers the same runs, statuses and
// state names as the baseline.
func checkHistory(b *testing.B, hc *http.Client, route string, pc *prefect.Client, deployment string) {
	b.Helper()
	want, _, err := OneByOneHistory(context.Background(), pc, deployment, historyRuns)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := hc.Get(route)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		FlowRuns []struct {
			ID        string `json:"id"`
			Status    string `json:"status"`
			StateName string `json:"state_name"`
		} `json:"flow_runs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d %v", route, resp.StatusCode, err)
	}
	if len(got.FlowRuns) != len(want) || len(want) != historyRuns {
		b.Fatalf("route gave %d runs, baseline %d, want %d", len(got.FlowRuns), len(want), historyRuns)
	}
	for i, w := range want {
		g := got.FlowRuns[i]
		if g.ID != w.ID || g.Status != w.Status || g.StateName != w.StateName {
			b.Fatalf("run %d: route %+v, baseline %+v", i, g, w)
		}
	}
}
