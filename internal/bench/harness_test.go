package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestMain stops what internal/testenv started once for this test binary
// (the cmd/api build of StartBinary).
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// These tests check the harness itself (the fake answers like Prefect, the
// baseline makes the Python proxy's calls, the load generator counts right).
// None of them measures time.

func startFake(t testing.TB, w *World, latency time.Duration) (*Fake, string, *prefect.Client) {
	t.Helper()
	f := NewFake(w, latency)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	api := srv.URL + "/api"
	u, _ := url.Parse(api)
	return f, api, prefect.New(prefect.Config{BaseURL: u, Retry: prefect.RetryPolicy{Attempts: 1}})
}

func TestOneByOneMakesThePythonProxysCalls(t *testing.T) {
	t.Parallel()
	w := NewWorld(50, 3)
	f, _, pc := startFake(t, w, 0)
	runs, calls, err := OneByOneHistory(context.Background(), pc, w.DeploymentID, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 50 || calls != w.Calls() || calls != 151 || int(f.Calls()) != calls {
		t.Fatalf("runs=%d calls=%d fake calls=%d, want 50, 151, 151", len(runs), calls, f.Calls())
	}
	byRoute := f.CallsByRoute()
	if byRoute["GET /api/flow_runs/{id}/graph"] != 100 || byRoute["POST /api/task_runs/filter"] != 50 {
		t.Fatalf("calls by route: %v", byRoute)
	}
	var failed, dbt int
	for i, r := range runs {
		if r.ID != w.Runs[i] {
			t.Fatalf("run %d is %s, want %s (newest first)", i, r.ID, w.Runs[i])
		}
		if r.Status == "FAILED" {
			failed++
		}
		if r.StateName == "DBT_TEST_FAILED" {
			dbt++
		}
	}
	if failed != 5 || dbt != 7 {
		t.Fatalf("failed=%d dbt_test_failed=%d, want 5 and 7", failed, dbt)
	}
}

func TestFakeAnswersLikePrefect(t *testing.T) {
	t.Parallel()
	w := NewWorld(3, 2)
	_, api, _ := startFake(t, w, 0)
	post := func(path, body string) (int, []map[string]any) {
		resp, err := http.Post(api+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	top := w.Runs[1]
	tests := []struct {
		name, path, body string
		status, n        int
	}{
		{"deployment filter lists top-level runs only", "/flow_runs/filter",
			`{"deployments":{"id":{"any_":["` + w.DeploymentID + `"]}},"sort":"START_TIME_DESC"}`, 200, 3},
		{"parent_flow_run_id finds the subflow", "/flow_runs/filter",
			`{"flow_runs":{"parent_flow_run_id":{"any_":["` + top + `"]}}}`, 200, 1},
		{"limit pages", "/flow_runs/filter", `{"limit":2,"offset":5}`, 200, 1},
		{"limit over 200 is refused", "/flow_runs/filter", `{"limit":201}`, 422, 0},
		{"task runs of one flow run", "/task_runs/filter",
			`{"flow_runs":{"id":{"any_":["` + top + `"]}}}`, 200, 3},
		{"or_ of subflow parents and DBT_TEST_FAILED", "/task_runs/filter",
			`{"flow_runs":{"id":{"any_":["` + top + `"]}},"task_runs":{"operator":"or_","subflow_runs":{"exists_":true},` +
				`"state":{"name":{"any_":["DBT_TEST_FAILED"]}}}}`, 200, 1},
		{"and_ of subflow parents and DBT_TEST_FAILED", "/task_runs/filter",
			`{"task_runs":{"subflow_runs":{"exists_":true},"state":{"name":{"any_":["DBT_TEST_FAILED"]}}}}`, 200, 0},
		{"task runs by flow_run_id", "/task_runs/filter",
			`{"task_runs":{"flow_run_id":{"any_":["` + top + `"]}}}`, 200, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(tc.path, tc.body)
			if status != tc.status || len(out) != tc.n {
				t.Fatalf("status %d with %d items, want %d with %d", status, len(out), tc.status, tc.n)
			}
		})
	}
	resp, err := http.Get(api + "/flow_runs/" + top)
	if err != nil {
		t.Fatal(err)
	}
	var run map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&run)
	resp.Body.Close()
	if run["id"] != top || run["deployment_id"] != w.DeploymentID || run["state_type"] == nil {
		t.Fatalf("flow run: %v", run)
	}
	resp, _ = http.Get(api + "/flow_runs/00000000-0000-0000-0000-000000000000")
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown run: %d, want 404", resp.StatusCode)
	}
}

func TestRunCountsEveryRequest(t *testing.T) {
	t.Parallel()
	var n int
	boom := errors.New("boom")
	r := Run(context.Background(), 1, 10, func(context.Context) error {
		n++
		if n%5 == 0 {
			return boom
		}
		return nil
	})
	if r.Requests != 10 || r.Errors != 2 || len(r.Latencies) != 8 || !errors.Is(r.FirstErr, boom) {
		t.Fatalf("%+v", r)
	}
	r = Run(context.Background(), 64, 1000, func(context.Context) error { return nil })
	if r.Requests != 1000 || r.Errors != 0 {
		t.Fatalf("%+v", r)
	}
	r = RunPaced(context.Background(), 8, 100, 10000, func(context.Context) error { return nil })
	if r.Requests != 100 || len(r.Latencies) != 100 {
		t.Fatalf("paced: %+v", r)
	}
}

func TestQuantileIsNearestRank(t *testing.T) {
	t.Parallel()
	var r Result
	for i := 1; i <= 100; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	if r.P50() != 50*time.Millisecond || r.P99() != 99*time.Millisecond || r.Quantile(1) != 100*time.Millisecond {
		t.Fatalf("p50=%v p99=%v max=%v", r.P50(), r.P99(), r.Quantile(1))
	}
	m := Merge(Result{Latencies: []time.Duration{3}}, Result{Latencies: []time.Duration{1, 2}})
	if m.P50() != 2 || m.Requests != 0 {
		t.Fatalf("merge: %+v", m)
	}
}

func TestProxyServesTheRealHandler(t *testing.T) {
	t.Parallel()
	w := NewWorld(1, 1)
	_, api, _ := startFake(t, w, 0)
	p, err := StartProxy(api, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	resp, err := http.Get(p.URL + "/proxy/prefect/version")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `"3.6.29"` {
		t.Fatalf("version through the proxy: %d %s", resp.StatusCode, b)
	}
}
