package e2e

// BenchmarkWrites compares synchronous flow-run creation (route 31,
// POST /proxy/deployments/{id}/flow_run) through this proxy, with the
// adaptive write limit on and off, against Prefect direct
// (POST /api/deployments/{id}/create_flow_run, one call, no retry), on a
// fresh Prefect on SQLite and one on PostgreSQL, at 16 and 64 closed-loop
// clients. Each proxy side is the real api and worker binaries on a Redis of
// its own (WORKER_CONCURRENCY=10). The sides take turns in rounds, in a
// rotating order, so a burst of outside load hits all of them.
//
//	make bench-writes
//	go test -run '^$' -bench Writes -benchtime 1x -timeout 60m -v ./internal/e2e/
//
// BENCH_WRITES_N: requests per side per round (default 200); BENCH_WRITES_ROUNDS
// (default 2); BENCH_WRITES_DB: sqlite, postgres or both (default);
// BENCH_WRITES_CLIENTS (default 16,64); BENCH_WRITES_FIXED=N adds a side with
// the limit off and WORKER_CONCURRENCY=N (e.g. 1: what a fixed, SQLite-sized
// concurrency gives). It prints numbers and never fails on
// them; a proxy answer that is not the run Prefect created fails it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/bench"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func BenchmarkWrites(b *testing.B) {
	n := envInt("BENCH_WRITES_N", 200)
	rounds := envInt("BENCH_WRITES_ROUNDS", 2)
	clients := []int{16, 64}
	if v := os.Getenv("BENCH_WRITES_CLIENTS"); v != "" {
		clients = nil
		for _, f := range strings.Split(v, ",") {
			if c, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && c > 0 {
				clients = append(clients, c)
			}
		}
	}
	dbs := []string{testenv.DBSQLite, testenv.DBPostgres}
	if v := os.Getenv("BENCH_WRITES_DB"); v != "" {
		dbs = strings.Split(v, ",")
	}
	for b.Loop() {
		for _, db := range dbs {
			b.Run("prefect="+db, func(b *testing.B) {
				writesOn(b, strings.TrimSpace(db), clients, n, rounds)
			})
		}
	}
}

// writeSide is one way of creating a flow run: direct or through a proxy.
type writeSide struct {
	name   string
	do     func(context.Context) error
	worker *testenv.Proc // nil for direct
}

func writesOn(b *testing.B, db string, clients []int, n, rounds int) {
	srv, err := testenv.StartPrefectOn(db)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	dep := srv.CreateDeployment(b, testenv.DeploymentSpec{})
	hc := bench.NewClient()
	sides := []writeSide{{name: "prefect direct", do: directCreate(hc, srv.URL, dep.ID)}}
	proxies := []struct{ name, limit, concurrency string }{{"proxy, limit on", "on", "10"}, {"proxy, limit off", "off", "10"}}
	if v := os.Getenv("BENCH_WRITES_FIXED"); v != "" {
		proxies = append(proxies, struct{ name, limit, concurrency string }{"proxy, fixed " + v, "off", v})
	}
	for _, p := range proxies {
		env := map[string]string{
			"REDIS_URL": testenv.Redis(b), "JOB_ENCRYPTION_KEY": testJobKey, "PREFECT_API_URL": srv.URL,
			"WORKER_ADAPTIVE_LIMIT": p.limit, "WORKER_CONCURRENCY": p.concurrency, "LOG_LEVEL": "warn",
		}
		api := testenv.StartAPI(b, env)
		worker := testenv.StartWorker(b, env)
		do := proxyCreate(hc, api.URL, dep.ID)
		checkProxyCreate(b, srv, hc, api.URL, dep.ID)
		sides = append(sides, writeSide{name: p.name, do: do, worker: worker})
	}
	fmt.Printf("\nBenchmarkWrites: Prefect %s on %s; %d requests per side per round, %d rounds; loadavg %s\n",
		srv.Version, db, n, rounds, loadavg())
	for _, c := range clients {
		res := make([][]bench.Result, len(sides))
		for r := range rounds {
			for k := range sides {
				i := (k + r) % len(sides) // rotate who goes first
				res[i] = append(res[i], bench.Run(b.Context(), c, n, sides[i].do))
			}
		}
		fmt.Printf("  %d clients:\n", c)
		for i, s := range sides {
			m := bench.Merge(res[i]...)
			line := fmt.Sprintf("    %-16s p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms  errors %4d/%d  %6.1f req/s",
				s.name, ms(m.P50()), ms(m.P99()), ms(m.Quantile(1)), m.Errors, m.Requests, m.RPS())
			if s.worker != nil {
				line += "  limit now " + workerMetric(hc, s.worker.URL, "proxy_adaptive_limit") +
					", cuts so far " + workerMetric(hc, s.worker.URL, "proxy_adaptive_limit_decreases_total")
			}
			if m.FirstErr != nil {
				line += "  first error: " + firstLine(m.FirstErr.Error())
			}
			fmt.Println(line)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// directCreate is Prefect's own create_flow_run with the body the proxy
// sends (less its idempotency key): one call, a 503 is an error.
func directCreate(hc *http.Client, prefectURL, depID string) func(context.Context) error {
	url := prefectURL + "/deployments/" + depID + "/create_flow_run"
	return func(ctx context.Context) error {
		body, _ := json.Marshal(map[string]any{
			"parameters": map[string]any{}, "context": map[string]any{}, "tags": []string{}, "labels": map[string]any{},
			"state": map[string]any{"type": "SCHEDULED", "name": "Scheduled",
				"state_details": map[string]any{"scheduled_time": time.Now().UTC().Format(time.RFC3339Nano)}},
		})
		_, err := post(ctx, hc, url, body, http.StatusCreated, http.StatusOK)
		return err
	}
}

func proxyCreate(hc *http.Client, apiURL, depID string) func(context.Context) error {
	url := apiURL + "/proxy/deployments/" + depID + "/flow_run"
	return func(ctx context.Context) error {
		_, err := post(ctx, hc, url, []byte(`{}`), http.StatusOK)
		return err
	}
}

// checkProxyCreate: the proxy's answer names a run Prefect created for the
// deployment.
func checkProxyCreate(b *testing.B, srv *testenv.PrefectServer, hc *http.Client, apiURL, depID string) {
	raw, err := post(b.Context(), hc, apiURL+"/proxy/deployments/"+depID+"/flow_run", []byte(`{}`), http.StatusOK)
	if err != nil {
		b.Fatal(err)
	}
	var got struct {
		FlowRunID string `json:"flow_run_id"`
	}
	if err := json.Unmarshal(raw, &got); err != nil || got.FlowRunID == "" {
		b.Fatalf("proxy answered %s (%v)", raw, err)
	}
	if run := srv.GetFlowRun(b, got.FlowRunID); run["deployment_id"] != depID {
		b.Fatalf("run %s belongs to deployment %v, want %s", got.FlowRunID, run["deployment_id"], depID)
	}
}

func post(ctx context.Context, hc *http.Client, url string, body []byte, ok ...int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return raw, nil
		}
	}
	return raw, fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, firstLine(string(raw)))
}

// workerMetric reads one unlabelled-or-single-series gauge from a worker's /metrics.
func workerMetric(hc *http.Client, workerURL, name string) string {
	resp, err := hc.Get(workerURL + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? (\S+)$`).FindSubmatch(raw)
	if m == nil {
		return "-"
	}
	return string(m[1])
}

func loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(raw))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
