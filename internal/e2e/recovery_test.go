package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestWorkerKilledWithinSyncWait: two workers; the one that takes a
// synchronous flow-run write is SIGKILLed after Prefect created the run but
// before the job recorded it. The other worker's sweeper notices the dead
// worker's silence and re-runs the job soon enough that the caller, still
// waiting, gets its 200 within JOB_WAIT_TIMEOUT (25 s); Prefect's
// idempotency_key (the job's run key) keeps it to exactly one flow run.
func TestWorkerKilledWithinSyncWait(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Prefect and waits for the sweeper (about 15 s)")
	}
	p := testenv.Prefect(t)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})

	// Each worker reaches Prefect through its own front. The first
	// create_flow_run call that creates the run goes through to Prefect, but
	// its answer is held (until the test ends) and the front says whose call
	// it was.
	target, _ := url.Parse(strings.TrimSuffix(p.URL, "/api"))
	rp := httputil.NewSingleHostReverseProxy(target)
	var held atomic.Bool
	reached := make(chan int, 1)
	release := make(chan struct{})
	front := func(worker int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/create_flow_run") || held.Load() {
				rp.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			if rec.Code/100 != 2 || !held.CompareAndSwap(false, true) {
				// Not created (a busy Prefect's 503): the worker retries as usual.
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			// Prefect created the run; the worker never hears of it.
			reached <- worker
			<-release
		}))
		t.Cleanup(s.Close)
		return s
	}
	fronts := []*httptest.Server{front(0), front(1)}
	// Cleanups run last-in first-out: release held handlers before the
	// fronts' Close waits for them.
	t.Cleanup(func() { close(release) })

	redisURL := testenv.Redis(t)
	env := func(prefectURL string) map[string]string {
		return map[string]string{"PREFECT_API_URL": prefectURL, "REDIS_URL": redisURL, "JOB_ENCRYPTION_KEY": testJobKey,
			"RELAY_RECONCILE_INTERVAL": "0", "LOG_LEVEL": "info", "JOB_WAIT_TIMEOUT": "25s"}
	}
	api := testenv.StartAPI(t, env(p.URL))
	workers := []*testenv.Proc{
		testenv.StartWorker(t, env(fronts[0].URL+"/api")),
		testenv.StartWorker(t, env(fronts[1].URL+"/api")),
	}

	type answer struct {
		r   httpResult
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		start := time.Now()
		resp, err := httpClient.Post(api.URL+"/proxy/deployments/"+dep.ID+"/flow_run", "application/json", strings.NewReader("{}"))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		answered <- answer{r: httpResult{Status: resp.StatusCode, Header: resp.Header, Body: body, Elapsed: time.Since(start)}, err: err}
	}()
	var killed int
	select {
	case killed = <-reached:
	case a := <-answered:
		t.Fatalf("answered before any worker called create_flow_run: %d %s %v", a.r.Status, a.r.Body, a.err)
	case <-time.After(20 * time.Second):
		t.Fatal("no worker called create_flow_run")
	}
	if n := len(runsOfDeployment(t, p, dep.ID)); n != 1 {
		t.Fatalf("%d flow runs before the kill, want 1", n)
	}
	workers[killed].Kill() // SIGKILL: no graceful shutdown, the job stays "active"

	var a answer
	select {
	case a = <-answered:
	case <-time.After(60 * time.Second):
		t.Fatal("the synchronous write never answered")
	}
	r := a.r
	if a.err != nil {
		t.Fatalf("synchronous write: %v", a.err)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("synchronous write after the kill: %d %s (after %s); want 200 within JOB_WAIT_TIMEOUT",
			r.Status, r.Body, r.Elapsed)
	}
	runs := runsOfDeployment(t, p, dep.ID)
	if len(runs) != 1 {
		t.Fatalf("%d flow runs in Prefect, want exactly 1", len(runs))
	}
	if got := r.object(t)["flow_run_id"]; got != runs[0] {
		t.Errorf("answered flow run %v, Prefect holds %s", got, runs[0])
	}
	jobID := r.Header.Get("Job-Id")
	j := send(t, "GET", api.URL+"/jobs/"+jobID, nil).expect(t, 200).object(t)
	// The lost attempt counts (attempt 2 at least); a busy shared Prefect may
	// answer the re-run 503 first, which the job retries.
	if j["state"] != "succeeded" || j["attempts"].(float64) < 2 {
		t.Errorf("job after the re-run = %v; want succeeded on attempt 2 or later (the lost attempt counts)", j)
	}
	metrics := send(t, "GET", workers[1-killed].URL+"/metrics", nil).expect(t, 200)
	if !strings.Contains(string(metrics.Body), `proxy_jobs_orphans_requeued_total{queue="critical"} 1`) {
		t.Errorf("the surviving worker's metrics do not count the re-queued job")
	}
	t.Logf("answered %d after %s", r.Status, r.Elapsed.Round(100*time.Millisecond))
}

// runsOfDeployment lists a deployment's flow runs, retrying a read that a
// Prefect keep-alive close cut off (uvicorn drops idle connections after
// 5 s; the client may reuse one just then, and a POST is not retried for it).
func runsOfDeployment(t *testing.T, p *testenv.PrefectServer, depID string) []string {
	t.Helper()
	var runs []struct{ ID string }
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = p.Call(ctx, "POST", "/flow_runs/filter", map[string]any{
			"flow_runs": map[string]any{"deployment_id": map[string]any{"any_": []string{depID}}}}, &runs)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("list flow runs: %v", err)
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}
