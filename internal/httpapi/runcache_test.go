package httpapi

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
)

// cacheRig is one fake Prefect behind two apis: one with the terminal-run
// cache (miniredis, the event stream marked live) and one without, so every
// cached answer can be compared with the uncached one byte for byte.
type cacheRig struct {
	world   *prefectWorld
	fake    *prefecttest.Server
	cached  http.Handler
	plain   http.Handler
	cache   *runcache.Cache
	redis   *miniredis.Miniredis
	depA    string
	done    *fakeRun // finished an hour ago, a subflow, logs with <&> in them
	dbtFail *fakeRun // finished, a subflow task DBT_TEST_FAILED
	running *fakeRun
	fresh   *fakeRun // finished just now: within the settle and log grace
}

func newCacheRig(t *testing.T) *cacheRig {
	t.Helper()
	w := &prefectWorld{}
	r := &cacheRig{world: w, depA: "10000000-0000-4000-8000-000000000001"}
	old := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	r.done = w.run(r.depA, "done", "COMPLETED", "Completed")
	r.done.End = old
	t1 := w.task(r.done, "extract", "COMPLETED", "Completed")
	w.task(r.done, "load <x> & y", "COMPLETED", "Completed", t1)
	_, sub := w.subflow(r.done, "dbt", "COMPLETED", "Completed")
	w.log(r.done, nil, "start <b>&amp;</b>")
	w.log(r.done, t1, "extracted")
	w.log(sub, nil, "dbt says hi")
	r.dbtFail = w.run(r.depA, "dbt-fail", "COMPLETED", "Completed")
	r.dbtFail.End = old
	_, sub2 := w.subflow(r.dbtFail, "dbt", "COMPLETED", "Completed")
	w.task(sub2, "dbt-test", "COMPLETED", proxy.DBTTestFailed)
	r.running = w.run(r.depA, "running", "RUNNING", "Running")
	w.task(r.running, "busy", "RUNNING", "Running")
	r.fresh = w.run("20000000-0000-4000-8000-000000000002", "fresh", "FAILED", "Failed")
	r.fresh.End = time.Now().UTC().Format(time.RFC3339Nano)
	w.task(r.fresh, "oops", "FAILED", "Failed")

	r.fake = prefecttest.New(t)
	w.install(r.fake)
	log := logrus.New()
	log.SetOutput(io.Discard)
	r.redis = miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	svc := proxy.New(r.fake.Client(), log)
	r.cache = runcache.New(rdb, svc, runcache.Config{}, prometheus.NewRegistry(), log)
	svc.Cache = r.cache
	r.cached = specChecked(t, New(Deps{Log: log, Proxy: svc, RunCache: r.cache}))
	r.plain = specChecked(t, New(Deps{Log: log, Proxy: proxy.New(r.fake.Client(), log)}))
	r.live(t, "1")
	return r
}

func (r *cacheRig) live(t *testing.T, gen string) {
	t.Helper()
	if gen == "" {
		r.redis.Del(runcache.LiveKey)
		return
	}
	if err := r.redis.Set(runcache.LiveKey, gen); err != nil {
		t.Fatal(err)
	}
}

// get answers path from h and the number of Prefect calls it took.
func (r *cacheRig) get(t *testing.T, h http.Handler, path string) (int, string, int) {
	t.Helper()
	before := len(r.fake.Calls())
	status, body := serveReads(t, h, "GET", path, "")
	return status, body, len(r.fake.Calls()) - before
}

// Every cached route answers what the uncached api answers, byte for byte;
// a finished run's second read costs Prefect nothing, other runs' always cost.
func TestRunCacheAnswersAreTheUncachedOnesWithoutPrefect(t *testing.T) {
	t.Parallel()
	r := newCacheRig(t)
	routes := []struct {
		name string
		path func(id string) string
	}{
		{"poll (22)", func(id string) string { return "/proxy/flow_runs/" + id + "/poll" }},
		{"flow run with final state (21)", func(id string) string { return "/proxy/flow_runs/" + id }},
		{"graph (28)", func(id string) string { return "/proxy/flow_runs/graph/" + id }},
		{"v1 logs (27)", func(id string) string { return "/proxy/flow_runs/v1/logs/" + id }},
		{"logs (26)", func(id string) string { return "/proxy/flow_runs/logs/" + id }},
		{"logs page (26)", func(id string) string { return "/proxy/flow_runs/logs/" + id + "?limit=1&offset=1" }},
	}
	runs := []struct {
		name       string
		run        *fakeRun
		freeRepeat map[string]bool // routes whose repeat costs no call
	}{
		{"finished run", r.done, map[string]bool{"poll (22)": true, "flow run with final state (21)": true, "graph (28)": true,
			"v1 logs (27)": true, "logs (26)": true, "logs page (26)": true}},
		{"running run", r.running, map[string]bool{}},
		{"run that just ended", r.fresh, map[string]bool{"poll (22)": true}},
	}
	for _, run := range runs {
		for _, rt := range routes {
			t.Run(run.name+"/"+rt.name, func(t *testing.T) {
				path := rt.path(run.run.ID)
				wantStatus, want, _ := r.get(t, r.plain, path)
				if wantStatus != http.StatusOK {
					t.Fatalf("uncached answer %d: %s", wantStatus, want)
				}
				for i := range 3 {
					status, got, calls := r.get(t, r.cached, path)
					if status != wantStatus || got != want {
						t.Fatalf("read %d answered %d %s\nuncached %d %s", i, status, got, wantStatus, want)
					}
					if i == 0 {
						continue
					}
					if free := run.freeRepeat[rt.name]; free != (calls == 0) {
						t.Errorf("read %d cost %d Prefect calls (free repeat expected: %v)", i, calls, free)
					}
				}
			})
		}
	}
}

// The history (19): a repeat costs only the listing; the state names stay
// those Prefect's task runs give.
func TestRunCacheHistoryCostsOnlyTheListing(t *testing.T) {
	t.Parallel()
	r := newCacheRig(t)
	path := "/proxy/flow_runs?deployment_id=" + r.depA
	_, want, _ := r.get(t, r.plain, path)
	for i := range 3 {
		status, got, calls := r.get(t, r.cached, path)
		if status != http.StatusOK || got != want {
			t.Fatalf("read %d answered %d %s\nuncached %s", i, status, got, want)
		}
		if i > 0 && calls != 1 {
			t.Errorf("repeat %d cost %d Prefect calls, want 1 (the listing)", i, calls)
		}
	}
	if !strings.Contains(want, proxy.DBTTestFailed) {
		t.Errorf("history lost the DBT_TEST_FAILED state name: %s", want)
	}
}

// A retried run: its event drops the cached answers and the next read shows
// the run running again; with the stream off nothing is served.
func TestRunCacheFollowsStateEventsAndTheStream(t *testing.T) {
	t.Parallel()
	r := newCacheRig(t)
	poll := "/proxy/flow_runs/" + r.done.ID + "/poll"
	graph := "/proxy/flow_runs/graph/" + r.done.ID
	for _, p := range []string{poll, graph, poll, graph} {
		r.get(t, r.cached, p)
	}
	if _, _, calls := r.get(t, r.cached, graph); calls != 0 {
		t.Fatalf("graph not cached: %d calls", calls)
	}

	r.world.mu.Lock()
	r.done.StateType, r.done.StateName, r.done.End = "SCHEDULED", "AwaitingRetry", ""
	r.world.mu.Unlock()
	// The fake's runs have no state timestamps to compare an event's time
	// with (runcache's own tests do): the event's time is left out.
	if err := r.cache.OnStateEvent(context.Background(), r.done.ID, "SCHEDULED", time.Time{}); err != nil {
		t.Fatal(err)
	}
	_, body, calls := r.get(t, r.cached, poll)
	if calls != 1 || !strings.Contains(body, `"AwaitingRetry"`) {
		t.Errorf("after the retry event the poll cost %d calls and answered %s", calls, body)
	}
	if _, _, calls := r.get(t, r.cached, poll); calls != 1 {
		t.Errorf("a scheduled run's poll was cached (%d calls)", calls)
	}

	r.world.mu.Lock()
	r.done.StateType, r.done.StateName, r.done.End = "COMPLETED", "Completed", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	r.world.mu.Unlock()
	r.get(t, r.cached, poll)
	if _, _, calls := r.get(t, r.cached, poll); calls != 0 {
		t.Errorf("finished again, the poll was not cached (%d calls)", calls)
	}
	r.live(t, "")
	if _, _, calls := r.get(t, r.cached, poll); calls != 1 {
		t.Errorf("stream off: the poll cost %d calls, want 1", calls)
	}
	r.live(t, "2")
	if _, _, calls := r.get(t, r.cached, poll); calls != 1 {
		t.Errorf("after a reconnect the old entry was served (%d calls)", calls)
	}
}
