package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// readsRuns is how many runs the fan-out reads cycle through: the 7th has a
// DBT_TEST_FAILED task in its subflow (SeedHistory, NewWorld).
const readsRuns = 7

// readRoute is one fan-out read and the one Prefect call it is compared with.
type readRoute struct {
	name   string
	proxy  func(id string) string // path under the proxy
	direct func(id string) string // path under the Prefect API root
	want   func(ctx context.Context, pc *prefect.Client, id string) (any, error)
}

var readRoutes = []readRoute{
	{"r21-flowrun", func(id string) string { return "/proxy/flow_runs/" + id },
		func(id string) string { return "/flow_runs/" + id }, OneByOneFlowRun},
	{"r27-logs", func(id string) string { return "/proxy/flow_runs/v1/logs/" + id },
		func(id string) string { return "/flow_runs/" + id + "/graph-v2" },
		func(ctx context.Context, pc *prefect.Client, id string) (any, error) {
			return OneByOneGraph(ctx, pc, id, true)
		}},
	{"r28-graph", func(id string) string { return "/proxy/flow_runs/graph/" + id },
		func(id string) string { return "/flow_runs/" + id + "/graph-v2" },
		func(ctx context.Context, pc *prefect.Client, id string) (any, error) {
			return OneByOneGraph(ctx, pc, id, false)
		}},
}

// BenchmarkReads compares the fan-out reads — routes 21 (flow run with its
// final state), 27 (v1 logs) and 28 (graph) — at one client with ONE direct
// Prefect call: GET /flow_runs/{id} for 21, GET /flow_runs/{id}/graph-v2 for
// 27 and 28 (the call each route cannot do without). Each iteration makes,
// for each route, the direct call and the proxied one back to back (which
// goes first alternates), over readsRuns runs that each have 3 task runs and
// a subflow with 3 task runs, every task run 20 logs. Before timing, every
// answer is checked against the Python proxy's one-by-one calls
// (OneByOneFlowRun, OneByOneGraph), and a separate pass counts the route's
// Prefect calls through a CallCounter. Reports per route: direct and proxy
// p50, proxy p50 / direct p50 (the goal is ≤ 2) and Prefect calls per request.
//
//	go test -run '^$' -bench Reads -benchtime 200x ./internal/bench/
//
// upstream=prefect runs on BENCH_PREFECT_URL or, under
// internal/testenv/cmd/withprefect, PREFECT_TEST_API_URL (make bench-reads).
func BenchmarkReads(b *testing.B) {
	hc := NewClient()
	b.Run("upstream=fake-3ms", func(b *testing.B) {
		up := fakeUpstream(b, "fake-3ms", 3*time.Millisecond)
		benchReads(b, hc, up.api, up.fake.World.Runs[:readsRuns])
	})
	b.Run("upstream=prefect", func(b *testing.B) {
		api := os.Getenv("BENCH_PREFECT_URL")
		if api == "" {
			api = os.Getenv(testenv.EnvPrefectURL)
		}
		if api == "" {
			b.Skip("neither BENCH_PREFECT_URL nor " + testenv.EnvPrefectURL + " is set (make bench-reads starts a Prefect)")
		}
		benchReads(b, hc, api, seedReads(b, api))
	})
}

// readsSeeded caches seedReads's runs per Prefect for the test process.
var readsSeeded = map[string][]string{}

// seedReads writes readsRuns runs (SeedHistory's shape) and 20 logs per task
// run into the Prefect at api, once per benchmark process.
func seedReads(b *testing.B, api string) []string {
	if ids, ok := readsSeeded[api]; ok {
		return ids
	}
	pf, err := testenv.ConnectPrefect(api)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	h := pf.SeedHistory(b, "bench-reads-"+uuid.NewString()[:8], readsRuns, tasksPerRun)
	for _, run := range h.Runs {
		var tasks []struct {
			ID        string `json:"id"`
			FlowRunID string `json:"flow_run_id"`
			Name      string `json:"name"`
		}
		pf.Do(b, "POST", "/task_runs/filter", map[string]any{"flow_runs": map[string]any{"operator": "or_",
			"id": map[string]any{"any_": []string{run}}, "parent_flow_run_id": map[string]any{"any_": []string{run}}}}, &tasks)
		for _, t := range tasks {
			pf.WriteLogs(b, t.FlowRunID, t.ID, t.Name+" line", LogsPerTask, time.Now().UTC())
		}
	}
	fmt.Fprintf(os.Stderr, "bench: seeded %d runs with logs on %s in %v\n", readsRuns, api, time.Since(start).Round(time.Millisecond))
	readsSeeded[api] = h.Runs
	return h.Runs
}

func benchReads(b *testing.B, hc *http.Client, api string, ids []string) {
	ctx := context.Background()
	p := startProxy(b, api)
	pc := newClient(api)
	counter, err := NewCallCounter(api)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(counter.Close)
	counted := startProxy(b, counter.URL)
	calls := make([]int64, len(readRoutes))
	for i, rt := range readRoutes {
		for _, id := range ids {
			want, err := rt.want(ctx, pc, id)
			if err != nil {
				b.Fatalf("%s one by one: %v", rt.name, err)
			}
			if got := getJSON(b, hc, p.URL+rt.proxy(id)); !reflect.DeepEqual(got, normalize(b, want)) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(want)
				b.Fatalf("%s of %s differs from the one-by-one answer:\n%s\n%s", rt.name, id, g, w)
			}
			before := counter.Calls()
			getJSON(b, hc, counted.URL+rt.proxy(id))
			calls[i] += counter.Calls() - before
		}
	}
	direct := make([][]time.Duration, len(readRoutes))
	proxied := make([][]time.Duration, len(readRoutes))
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		id := ids[n%len(ids)]
		for i, rt := range readRoutes {
			d, pr := api+rt.direct(id), p.URL+rt.proxy(id)
			if n%2 == 1 {
				proxied[i] = append(proxied[i], timedGet(b, hc, pr))
				direct[i] = append(direct[i], timedGet(b, hc, d))
				continue
			}
			direct[i] = append(direct[i], timedGet(b, hc, d))
			proxied[i] = append(proxied[i], timedGet(b, hc, pr))
		}
	}
	b.StopTimer()
	for i, rt := range readRoutes {
		D, P := Merge(Result{Latencies: direct[i]}), Merge(Result{Latencies: proxied[i]})
		b.ReportMetric(ms(D.P50()), rt.name+"-direct-p50-ms")
		b.ReportMetric(ms(P.P50()), rt.name+"-proxy-p50-ms")
		b.ReportMetric(float64(P.P50())/float64(D.P50()), rt.name+"-x-direct")
		b.ReportMetric(float64(calls[i])/float64(len(ids)), rt.name+"-calls")
	}
}

func timedGet(b *testing.B, hc *http.Client, u string) time.Duration {
	t := time.Now()
	resp, err := hc.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	return time.Since(t)
}

func getJSON(b *testing.B, hc *http.Client, u string) any {
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

// normalize round-trips v through JSON, so it compares with a decoded answer.
func normalize(b *testing.B, v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		b.Fatal(err)
	}
	return out
}
