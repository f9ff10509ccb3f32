package e2e

// BenchmarkSoak holds a steady mixed load on the real api and worker
// binaries (real redis-server, relay on, a fake Prefect and a test Django
// answering at once) and prints how their resident memory and goroutines
// change: the proxy must not grow under a long steady load.
//
//	SOAK_DURATION=10m go test -run '^$' -bench Soak -benchtime 1x -timeout 30m -v ./internal/e2e/
//
// SOAK_DURATION (default 10m) and SOAK_RATE (requests per second, default
// 500); SOAK_BIN=<dir> runs the api and worker binaries found there (an
// older build) instead of this build's. Each second's requests are 50 % polls (GET /proxy/flow_runs/{id}/poll),
// 20 % flow runs (GET /proxy/flow_runs/{id}, three Prefect calls), 20 %
// synchronous writes (POST /proxy/deployments/{id}/flow_run, a job run by
// the worker) and 10 % notifications (the relay's ingress, delivered to
// Django by the worker). Growth is compared at rest, the load paused and the
// client's idle connections closed: after a warm-up (a tenth of the run, at
// least 10 s, so pools and caches are full) and after the soak. Samples under
// load are printed too. It prints numbers; it fails only if requests fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/bench"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// growth is one process's resident memory and goroutines at one moment.
type growth struct {
	rssKiB     int64
	goroutines int64
}

// rssKiB is VmRSS of pid.
func rssKiB(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// goroutines reads go_goroutines from a process's /metrics.
func goroutines(metricsURL string) (int64, error) {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("%s: no go_goroutines", metricsURL)
}

func sampleGrowth(tb testing.TB, p *testenv.Proc) growth {
	tb.Helper()
	rss, err := rssKiB(p.Pid())
	if err != nil {
		tb.Fatal(err)
	}
	g, err := goroutines(p.URL + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	return growth{rss, g}
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// soakPrefect is the fake Prefect's world plus create_flow_run.
func soakPrefect(world *bench.World) http.Handler {
	fake := bench.NewFake(world, 0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/create_flow_run") {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"id": uuid.NewString(), "name": "soak-run"})
			return
		}
		fake.ServeHTTP(w, r)
	})
}

// soakRequest is the mixed request k.
func soakRequest(hc *http.Client, apiURL string, world *bench.World, inKey string) func(context.Context) error {
	var n atomic.Uint64
	return func(ctx context.Context) error {
		k := n.Add(1) - 1
		run := world.Runs[k%uint64(len(world.Runs))]
		var method, url, body string
		header := http.Header{"x-ddp-org": {"soak"}}
		switch k % 10 {
		case 0, 1, 2, 3, 4:
			method, url = http.MethodGet, apiURL+"/proxy/flow_runs/"+run+"/poll"
		case 5, 6:
			method, url = http.MethodGet, apiURL+"/proxy/flow_runs/"+run
		case 7, 8:
			method, url = http.MethodPost, apiURL+"/proxy/deployments/"+world.DeploymentID+"/flow_run"
			body = `{"config": {"org_slug": "soak", "k": ` + strconv.FormatUint(k, 10) + `}}`
		default:
			id := uuid.NewString()
			raw, _ := json.Marshal(notification(id, "Completed", "COMPLETED", time.Now()))
			method, url, body = http.MethodPost, apiURL+"/webhooks/v1/notification/", string(raw)
			header.Set("X-Notification-Key", inKey)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader([]byte(body)))
		if err != nil {
			return err
		}
		req.Header = header
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
		}
		return nil
	}
}

func BenchmarkSoak(b *testing.B) {
	duration := envDuration("SOAK_DURATION", 10*time.Minute)
	rate := 500.0
	if v, err := strconv.ParseFloat(os.Getenv("SOAK_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	world := bench.NewWorld(50, 3)
	prefect := httptest.NewServer(soakPrefect(world))
	defer prefect.Close()
	for b.Loop() {
		rs := testenv.RedisFull(b)
		dj := testenv.NewDjango(b, relayDjangoKey)
		inKey := "soak-inbound"
		env := benchEnv(rs.URL, prefect.URL+"/api", dj, inKey)
		// Finished jobs leave Redis soon, so Redis stays small on a long run.
		env["JOB_RETENTION"] = "2m"
		api := startFrom(b, os.Getenv("SOAK_BIN"), "api", env)
		worker := startFrom(b, os.Getenv("SOAK_BIN"), "worker", env)
		procs := []struct {
			name string
			p    *testenv.Proc
		}{{"api", api}, {"worker", worker}}
		hc := bench.NewClient()
		do := soakRequest(hc, api.URL, world, inKey)
		// at rest: the load stopped, the client's idle connections closed
		// (each holds a goroutine in the api), and the api's idle
		// connections to Prefect closed too (4 s; two goroutines each).
		atRest := func() []growth {
			hc.CloseIdleConnections()
			time.Sleep(6 * time.Second)
			out := make([]growth, len(procs))
			for i, p := range procs {
				out[i] = sampleGrowth(b, p.p)
			}
			return out
		}

		warm := max(duration/10, 10*time.Second)
		if r := bench.RunPaced(context.Background(), 256, int(rate*warm.Seconds()), rate, do); r.Errors > 0 {
			b.Fatalf("warm-up: %d of %d requests failed; first: %v", r.Errors, r.Requests, r.FirstErr)
		}
		start := atRest()
		b.Logf("soak: %.0f requests/s for %s after %s of warm-up (load average %s)", rate, duration, warm, loadAvg())
		resCh := make(chan bench.Result, 1)
		go func() { resCh <- bench.RunPaced(context.Background(), 256, int(rate*duration.Seconds()), rate, do) }()
		// Under load every tenth of the run: a trend, not just two points
		// (goroutines there follow the requests in flight).
		for step := 1; step < 10; step++ {
			time.Sleep(duration / 10)
			var parts []string
			for _, p := range procs {
				g := sampleGrowth(b, p.p)
				parts = append(parts, fmt.Sprintf("%s %d KiB %d goroutines", p.name, g.rssKiB, g.goroutines))
			}
			b.Logf("  under load at %s: %s", duration/10*time.Duration(step), strings.Join(parts, "; "))
		}
		res := <-resCh
		end := atRest()
		b.Logf("soak: %s (load average %s)", res, loadAvg())
		pct := func(a, z int64) float64 { return float64(z-a) / float64(a) * 100 }
		for i, p := range procs {
			b.Logf("%s, at rest before and after the soak: RSS %d → %d KiB (%+.1f %%), goroutines %d → %d (%+.1f %%)",
				p.name, start[i].rssKiB, end[i].rssKiB, pct(start[i].rssKiB, end[i].rssKiB),
				start[i].goroutines, end[i].goroutines, pct(start[i].goroutines, end[i].goroutines))
			b.ReportMetric(pct(start[i].rssKiB, end[i].rssKiB), p.name+"-rss-growth-%")
			b.ReportMetric(pct(start[i].goroutines, end[i].goroutines), p.name+"-goroutine-growth-%")
		}
		b.ReportMetric(res.RPS(), "req/s")
		b.ReportMetric(float64(res.P99().Microseconds())/1000, "p99-ms")
		if res.Errors > 0 {
			b.Errorf("%d of %d requests failed; first: %v", res.Errors, res.Requests, res.FirstErr)
		}
	}
}
