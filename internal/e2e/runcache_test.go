package e2e

// End-to-end tests of the terminal-run cache: the real api binary with a
// real Redis, a counting reverse proxy between it and a real Prefect (every
// supported release), so the goals are counted where they matter, at Prefect.

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// prefectCounter is a reverse proxy in front of Prefect counting the calls
// that reach it, by "METHOD path" with ids replaced by :id.
type prefectCounter struct {
	mu    sync.Mutex
	calls map[string]int
	URL   string // the API root to give the api (…/api)
}

func countPrefect(t testing.TB, prefectURL string) *prefectCounter {
	t.Helper()
	target, err := url.Parse(strings.TrimSuffix(prefectURL, "/api"))
	if err != nil {
		t.Fatal(err)
	}
	c := &prefectCounter{calls: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.calls[r.Method+" "+templatePath(r.URL.Path)]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL + "/api"
	return c
}

// templatePath replaces UUID segments with :id.
func templatePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if len(s) == 36 && strings.Count(s, "-") == 4 {
			parts[i] = ":id"
		}
	}
	return strings.Join(parts, "/")
}

// take returns the calls counted since the last take, and their total.
func (c *prefectCounter) take() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, n := c.calls, 0
	for _, v := range out {
		n += v
	}
	c.calls = map[string]int{}
	return out, n
}

// TestRunCacheAgainstRealPrefect runs the cache's goals against every
// supported Prefect release: answers byte-identical to the uncached api's; a
// repeated 50-run history costs 1 call (the listing); polling a finished run
// costs 0; 64 clients reading 50 finished runs' graphs cost at most one
// graph read per run, 0 once cached, and at most 1 call per run after the
// stream reconnected; a retry through the proxy is seen at once; with the
// event stream off, every read goes to Prefect.
func TestRunCacheAgainstRealPrefect(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: needs real Prefect servers and redis-server")
	}
	for _, version := range testenv.SupportedPrefectVersions() {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			p := testenv.Prefect(t)
			if version != p.Version {
				srv, err := testenv.StartLocalPrefect(version)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(srv.Stop)
				p = srv
			}
			if p.Version != version {
				t.Fatalf("server reports %q, want %q", p.Version, version)
			}
			runCacheScenario(t, p)
		})
	}
}

type cacheWorld struct {
	p       *testenv.PrefectServer
	count   *prefectCounter
	cached  string // the api with the cache, through the counter
	plain   string // an api with RUN_CACHE=off, straight to Prefect
	rdb     *redis.Client
	history testenv.History
}

func runCacheScenario(t *testing.T, p *testenv.PrefectServer) {
	w := &cacheWorld{p: p}
	w.history = p.SeedHistory(t, testenv.Unique("cache"), 50, 2)
	p.WriteLogs(t, w.history.Runs[0], "", "line <b>&amp;</b> é", 30, time.Now().Add(-time.Minute))

	red := testenv.RedisFull(t)
	w.rdb = redis.NewClient(&redis.Options{Addr: red.Addr})
	t.Cleanup(func() { _ = w.rdb.Close() })
	w.count = countPrefect(t, p.URL)
	env := map[string]string{
		"PREFECT_API_URL": w.count.URL, "REDIS_URL": red.URL, "JOB_ENCRYPTION_KEY": testJobKey,
		// Seeded runs have no late task-run states or log lines to wait for.
		"RUN_CACHE": "on", "RUN_CACHE_SETTLE": "1ms", "RUN_CACHE_LOG_GRACE": "1ms",
	}
	w.cached = testenv.StartAPI(t, env).URL
	testenv.StartWorker(t, env) // runs the retry below (and drops its entries)
	w.plain = testenv.StartAPI(t, map[string]string{"PREFECT_API_URL": p.URL, "RUN_CACHE": "off"}).URL
	// The event stream's mark, as its subscriber keeps it while connected.
	if err := w.rdb.Set(context.Background(), runcache.LiveKey, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}

	// Subtests share the world and run in order.
	t.Run("answers are the uncached ones, byte for byte", w.identity)
	t.Run("a repeated 50-run history costs 1 call", w.historyGoal)
	t.Run("polling a finished run costs 0 calls", w.pollGoal)
	t.Run("64 clients reading 50 graphs cost at most a read per run", w.graphGoal)
	t.Run("a retry through the proxy is seen at once", w.retry)
	t.Run("with the stream off every read goes to Prefect", w.streamOff)
}

func (w *cacheWorld) historyPath() string {
	return "/proxy/flow_runs?deployment_id=" + w.history.Deployment.ID
}

func (w *cacheWorld) identity(t *testing.T) {
	run := w.history.Runs[0]
	for _, path := range []string{
		"/proxy/flow_runs/" + run + "/poll",
		"/proxy/flow_runs/" + run,
		"/proxy/flow_runs/graph/" + run,
		"/proxy/flow_runs/v1/logs/" + run,
		"/proxy/flow_runs/logs/" + run,
		"/proxy/flow_runs/logs/" + run + "?limit=7&offset=3",
		w.historyPath(),
	} {
		want := send(t, "GET", w.plain+path, nil).expect(t, 200)
		w.count.take()
		first := send(t, "GET", w.cached+path, nil).expect(t, 200)
		_, firstCalls := w.count.take()
		second := send(t, "GET", w.cached+path, nil).expect(t, 200)
		calls, secondCalls := w.count.take()
		if string(first.Body) != string(want.Body) || string(second.Body) != string(want.Body) {
			t.Errorf("%s: cached answers differ from the uncached one\nuncached: %s\nfirst:    %s\nsecond:   %s",
				path, want.Body, first.Body, second.Body)
		}
		if ct := second.Header.Get("Content-Type"); ct != want.Header.Get("Content-Type") {
			t.Errorf("%s: Content-Type %q, uncached %q", path, ct, want.Header.Get("Content-Type"))
		}
		wantCalls := 0
		if path == w.historyPath() {
			wantCalls = 1
		}
		if secondCalls != wantCalls {
			t.Errorf("%s: the repeat cost %d Prefect calls %v, want %d (the first cost %d)", path, secondCalls, calls, wantCalls, firstCalls)
		}
	}
}

func (w *cacheWorld) historyGoal(t *testing.T) {
	send(t, "GET", w.cached+w.historyPath(), nil).expect(t, 200)
	w.count.take()
	for range 3 {
		rows := send(t, "GET", w.cached+w.historyPath(), nil).expect(t, 200).object(t)["flow_runs"].([]any)
		if len(rows) != 50 {
			t.Fatalf("history has %d runs, want 50", len(rows))
		}
		calls, n := w.count.take()
		if n != 1 || calls["POST /api/flow_runs/filter"] != 1 {
			t.Errorf("a repeated history cost %d Prefect calls %v, want 1 (the listing)", n, calls)
		}
	}
}

func (w *cacheWorld) pollGoal(t *testing.T) {
	run := w.history.Runs[1]
	send(t, "GET", w.cached+"/proxy/flow_runs/"+run+"/poll", nil).expect(t, 200)
	w.count.take()
	for range 20 {
		send(t, "GET", w.cached+"/proxy/flow_runs/"+run+"/poll", nil).expect(t, 200)
	}
	if calls, n := w.count.take(); n != 0 {
		t.Errorf("20 polls of a finished run cost %d Prefect calls %v, want 0", n, calls)
	}
}

func (w *cacheWorld) graphGoal(t *testing.T) {
	runs := w.history.Runs
	w.count.take()
	// inStep: every client reads the runs in the same order, so the 64
	// concurrent misses of a run meet in one read of Prefect while Prefect
	// serves only a run or two at a time (64 clients each missing a
	// different run at once stalled the shared Prefect for the other tests).
	round := func(inStep bool) {
		var wg sync.WaitGroup
		for c := range 64 {
			wg.Go(func() {
				order := rand.New(rand.NewPCG(uint64(c), 1)).Perm(len(runs))
				if inStep {
					order = rand.New(rand.NewPCG(0, 1)).Perm(len(runs))
				}
				for _, i := range order {
					r := send(t, "GET", w.cached+"/proxy/flow_runs/graph/"+runs[i], nil)
					if r.Status != 200 {
						t.Errorf("graph of %s: %d %s", runs[i], r.Status, r.Body)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	round(true)
	calls, n := w.count.take()
	t.Logf("first round, 64 clients × 50 graphs (run 0's cached already): %d Prefect calls %v", n, calls)
	if g := calls["GET /api/flow_runs/:id/graph-v2"]; g > len(runs) {
		t.Errorf("%d graph reads for %d runs: concurrent misses were not shared", g, len(runs))
	}
	if n > 4*len(runs) {
		t.Errorf("%d Prefect calls for %d runs, more than one uncached graph read (4 calls) per run", n, len(runs))
	}
	round(false)
	if calls, n := w.count.take(); n != 0 {
		t.Errorf("second round cost %d Prefect calls %v, want 0", n, calls)
	}

	// The stream reconnects (a new generation): each run's entries are
	// served again once its state, read once from Prefect, shows it unchanged.
	if err := w.rdb.Set(context.Background(), runcache.LiveKey, "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	round(false)
	calls, n = w.count.take()
	t.Logf("after a reconnect, 64 clients × 50 graphs: %d Prefect calls %v", n, calls)
	if n > len(runs) || n != calls["GET /api/flow_runs/:id"] {
		t.Errorf("after a reconnect: %d Prefect calls %v, want at most one state read per run", n, calls)
	}
	send(t, "GET", w.cached+w.historyPath(), nil).expect(t, 200)
	if calls, n := w.count.take(); n != 1 {
		t.Errorf("after a reconnect the history cost %d calls %v, want 1 (the listing)", n, calls)
	}
}

func (w *cacheWorld) retry(t *testing.T) {
	run := w.history.Runs[2]
	poll := func() map[string]any {
		return send(t, "GET", w.cached+"/proxy/flow_runs/"+run+"/poll", nil).expect(t, 200).object(t)
	}
	poll()
	if fr := poll(); fr["state_type"] != "COMPLETED" {
		t.Fatalf("state %v before the retry", fr["state_type"])
	}
	send(t, "POST", w.cached+"/proxy/flow_runs/"+run+"/retry", map[string]any{"minutes": 5}).expect(t, 200)
	if fr := poll(); fr["state_type"] != "SCHEDULED" || fr["state_name"] != "AwaitingRetry" {
		t.Errorf("after the retry the poll answers %v %v (the cached finished run?)", fr["state_type"], fr["state_name"])
	}
	w.count.take()
	poll()
	if _, n := w.count.take(); n != 1 {
		t.Errorf("a scheduled run's poll cost %d calls, want 1 (never cached)", n)
	}
}

func (w *cacheWorld) streamOff(t *testing.T) {
	run := w.history.Runs[3]
	path := w.cached + "/proxy/flow_runs/" + run + "/poll"
	send(t, "GET", path, nil).expect(t, 200)
	if err := w.rdb.Del(context.Background(), runcache.LiveKey).Err(); err != nil {
		t.Fatal(err)
	}
	w.count.take()
	for range 3 {
		send(t, "GET", path, nil).expect(t, 200)
	}
	if _, n := w.count.take(); n != 3 {
		t.Errorf("with the stream off 3 polls cost %d calls, want 3", n)
	}
	metrics := send(t, "GET", w.cached+"/metrics", nil).expect(t, 200).Body
	for _, want := range []string{`proxy_run_cache_hits_total{kind="graph"}`, `proxy_run_cache_misses_total{kind="poll",reason="stream"} 3`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
