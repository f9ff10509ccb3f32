package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

const testDep = "00000000-0000-4000-8000-0000000000d1"

// scenario is a deployment with:
//
//	r1 COMPLETED: t1, subflow c1 (t3, subflow c2 (dbt-test: DBT_TEST_FAILED)), logs on r1/t1/c1/t3
//	r2 FAILED:    a → b → c and a → c (a diamond)
//	r3 COMPLETED: no task runs
//	r4 RUNNING:   not terminal, never listed by route 19
type scenario struct {
	w                  *prefectWorld
	r1, r2, r3, r4     *fakeRun
	c1, c2             *fakeRun
	t1, t3, ta, tb, tc *fakeTask
}

func newScenario() *scenario {
	w := &prefectWorld{}
	s := &scenario{w: w}
	s.r1 = w.run(testDep, "r1", "COMPLETED", "Completed")
	s.r1.Params = map[string]any{"payload": map[string]any{"connection_id": "conn-1"}}
	s.t1 = w.task(s.r1, "t1", "COMPLETED", "Completed")
	_, s.c1 = w.subflow(s.r1, "sub1", "COMPLETED", "Completed")
	s.t3 = w.task(s.c1, "t3", "COMPLETED", "Completed")
	_, s.c2 = w.subflow(s.c1, "sub2", "COMPLETED", "Completed")
	w.task(s.c2, "dbt-test", "COMPLETED", "DBT_TEST_FAILED")
	w.log(s.r1, nil, "r1 start")
	w.log(s.r1, s.t1, "t1 says")
	w.log(s.c1, nil, "c1 start")
	w.log(s.c1, s.t3, "t3 says")
	w.log(s.r1, nil, "r1 end")
	s.r2 = w.run(testDep, "r2", "FAILED", "Failed")
	s.ta = w.task(s.r2, "a", "COMPLETED", "Completed")
	s.tb = w.task(s.r2, "b", "COMPLETED", "Completed", s.ta)
	s.tc = w.task(s.r2, "c", "FAILED", "Failed", s.tb, s.ta)
	s.r3 = w.run(testDep, "r3", "COMPLETED", "Completed")
	s.r4 = w.run(testDep, "r4", "RUNNING", "Running")
	return s
}

const unknownID = "11111111-1111-4111-8111-111111111111"

func TestFlowRunHistory(t *testing.T) {
	t.Parallel()
	s := newScenario()
	fake, h := flowRunsAPI(t, s.w)
	code, body := serveReads(t, h, "GET", "/proxy/flow_runs?deployment_id="+testDep, "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	row := func(r *fakeRun, status, stateName string) string {
		return fmt.Sprintf(`{"id":%q,"name":%q,"tags":["t"],"startTime":%q,"expectedStartTime":%q,
			"totalRunTime":1.5,"status":%q,"state_name":%q}`, r.ID, r.Name, r.Start, r.Start, status, stateName)
	}
	assertJSON(t, body, `{"flow_runs":[`+row(s.r1, "COMPLETED", "DBT_TEST_FAILED")+","+
		row(s.r2, "FAILED", "Failed")+","+row(s.r3, "COMPLETED", "Completed")+`]}`)

	// The run filter is the Python proxy's, paged.
	calls := fake.CallsTo("POST", "/flow_runs/filter")
	if len(calls) != 1 {
		t.Fatalf("flow_runs/filter calls = %d", len(calls))
	}
	assertJSON(t, string(calls[0].Body), `{"sort":"START_TIME_DESC","limit":200,"offset":0,
		"deployments":{"id":{"any_":["`+testDep+`"]}},
		"flow_runs":{"operator":"and_","state":{"type":{"any_":["COMPLETED","FAILED","CRASHED","CANCELLED"]}}}}`)
	// The subflow/state scan is one batched task-run filter per two depth
	// levels (3 levels: runs and c1, then c2), not a call per run.
	tr := fake.CallsTo("POST", "/task_runs/filter")
	if len(tr) != 2 {
		t.Fatalf("task_runs/filter calls = %d, want 2 (one per two levels)", len(tr))
	}
	ids := `["` + s.r1.ID + `","` + s.r2.ID + `","` + s.r3.ID + `"]`
	assertJSON(t, string(tr[0].Body), `{"limit":200,"offset":0,
		"flow_runs":{"operator":"or_","id":{"any_":`+ids+`},"parent_flow_run_id":{"any_":`+ids+`}},
		"task_runs":{"operator":"or_","subflow_runs":{"exists_":true},"state":{"name":{"any_":["DBT_TEST_FAILED"]}}}}`)
	if len(fake.CallsTo("GET", "/flow_runs/"+s.r1.ID+"/graph")) != 0 {
		t.Fatal("the v1 graph must not be walked per run")
	}
}

func TestFlowRunHistoryQuery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		query     string
		wantCode  int
		wantBody  string // JSON; "" = not checked
		wantLimit any    // limit of the first flow_runs/filter call; nil = no call expected
		wantAfter any
	}{
		{"limit is passed to Prefect", "deployment_id=" + testDep + "&limit=2", 200, "", 2.0, nil},
		{"start_time_gt becomes start_time.after_", "deployment_id=" + testDep + "&start_time_gt=2026-01-01T00:00:00%2B00:00", 200, "", 200.0, "2026-01-01T00:00:00+00:00"},
		{"an unencoded + in start_time_gt (decoded as a space) still reaches Prefect as the offset",
			"deployment_id=" + testDep + "&start_time_gt=2026-01-01T00:00:00.123456+00:00", 200, "", 200.0, "2026-01-01T00:00:00.123456+00:00"},
		{"missing deployment_id is a 422 list", "limit=1", 422,
			`{"detail":[{"loc":["query","deployment_id"],"msg":"Field required","type":"missing"}]}`, nil, nil},
		{"negative limit is a 422", "deployment_id=" + testDep + "&limit=-1", 422,
			`{"detail":[{"loc":["query","limit"],"msg":"Input should be greater than or equal to 0","type":"greater_than_equal"}]}`, nil, nil},
		{"non-integer limit is a 422", "deployment_id=" + testDep + "&limit=ten", 422,
			`{"detail":[{"loc":["query","limit"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing"}]}`, nil, nil},
		{"non-UUID deployment is the route's 400 without a Prefect call", "deployment_id=nope", 400,
			`{"detail":"failed to fetch flow_runs for deployment"}`, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, h := flowRunsAPI(t, newScenario().w)
			code, body := serveReads(t, h, "GET", "/proxy/flow_runs?"+tc.query, "")
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tc.wantCode, body)
			}
			if tc.wantBody != "" {
				assertJSON(t, body, tc.wantBody)
			}
			calls := fake.CallsTo("POST", "/flow_runs/filter")
			if tc.wantLimit == nil {
				if len(fake.Calls()) != 0 {
					t.Fatalf("Prefect was called: %v", fake.Calls())
				}
				return
			}
			b := calls[0].JSON(t)
			if b["limit"] != tc.wantLimit {
				t.Errorf("limit = %v, want %v", b["limit"], tc.wantLimit)
			}
			after := obj(obj(b, "flow_runs"), "start_time")["after_"]
			if after != tc.wantAfter {
				t.Errorf("start_time.after_ = %v, want %v", after, tc.wantAfter)
			}
		})
	}
}

func TestFlowRunHistoryPagesPastTheCap(t *testing.T) {
	t.Parallel()
	w := &prefectWorld{}
	for i := range 450 {
		w.run(testDep, fmt.Sprint("run-", i), "COMPLETED", "Completed")
	}
	fake, h := flowRunsAPI(t, w)
	for _, tc := range []struct {
		query string
		want  int
	}{{"", 450}, {"&limit=0", 450}, {"&limit=250", 250}, {"&limit=3", 3}} {
		code, body := serveReads(t, h, "GET", "/proxy/flow_runs?deployment_id="+testDep+tc.query, "")
		if code != 200 {
			t.Fatalf("%s: status %d", tc.query, code)
		}
		if got := len(mustJSON(t, body).(map[string]any)["flow_runs"].([]any)); got != tc.want {
			t.Fatalf("%s: %d runs, want %d", tc.query, got, tc.want)
		}
	}
	// 450 roots of one level: the task-run scan is chunked (≤ 200 ids per call).
	for _, c := range fake.CallsTo("POST", "/task_runs/filter") {
		if n := len(anyOf(obj(c.JSON(t), "flow_runs"), "id")); n > 200 {
			t.Fatalf("task-run filter carries %d ids", n)
		}
	}
}

func TestFlowRunByID(t *testing.T) {
	t.Parallel()
	s := newScenario()
	fake, h := flowRunsAPI(t, s.w)

	code, body := serveReads(t, h, "GET", "/proxy/flow_runs/"+s.r1.ID, "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	got := mustJSON(t, body).(map[string]any)
	if got["status"] != "COMPLETED" || got["state_name"] != "DBT_TEST_FAILED" || got["id"] != s.r1.ID || got["deployment_id"] != testDep {
		t.Fatalf("route 21 = %v", got)
	}
	// state_name replaces Prefect's own key in place; status is appended.
	if strings.Count(body, `"state_name"`) != 1 || !strings.HasSuffix(body, `"status":"COMPLETED"}`) {
		t.Fatalf("keys: %s", body)
	}

	code, body = serveReads(t, h, "GET", "/proxy/flow_runs/"+s.r2.ID, "")
	got = mustJSON(t, body).(map[string]any)
	if code != 200 || got["status"] != "FAILED" || got["state_name"] != "Failed" {
		t.Fatalf("r2: %d %v", code, got)
	}
	// A subflow is read as a run of its own: its tree holds the failed test too.
	_, body = serveReads(t, h, "GET", "/proxy/flow_runs/"+s.c2.ID, "")
	if mustJSON(t, body).(map[string]any)["state_name"] != "DBT_TEST_FAILED" {
		t.Fatalf("c2: %s", body)
	}
	if n := len(fake.CallsTo("GET", "/flow_runs/"+s.r1.ID+"/graph")); n != 0 {
		t.Fatalf("v1 graph called %d times", n)
	}
}

func TestFlowRunPollIsPrefectsBytes(t *testing.T) {
	t.Parallel()
	fake, h := flowRunsAPI(t, nil)
	const raw = `{"id":"` + unknownID + `","total_run_time":0.0,"z":1,"a":"<&>","state_name":"Completed"}`
	fake.Handle("GET /flow_runs/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(raw))
	})
	code, body := serveReads(t, h, "GET", "/proxy/flow_runs/"+unknownID+"/poll", "")
	if code != 200 || body != raw {
		t.Fatalf("poll = %d %s, want Prefect's bytes %s", code, body, raw)
	}
	// The upper-case form of a UUID is the same run.
	code, _ = serveReads(t, h, "GET", "/proxy/flow_runs/"+strings.ToUpper(unknownID)+"/poll/", "")
	if code != 200 {
		t.Fatalf("upper-case id with trailing slash: %d", code)
	}
}

// TestFlowRunErrors runs every id route through the error cases.
func TestFlowRunErrors(t *testing.T) {
	t.Parallel()
	routes := []struct {
		path    string // %s = id
		failMsg string // %s = id
		unknown int    // status for a well-formed unknown id
	}{
		{"/proxy/flow_runs/%s", "failed to fetch flow_run %s", 400},
		{"/proxy/flow_runs/%s/poll", "failed to fetch flow_run %s", 400},
		{"/proxy/flow_runs/graph/%s", "failed to fetch graph for flow_run", 400},
		{"/proxy/flow_runs/v1/logs/%s", "failed to fetch logs for flow_run", 400},
		{"/proxy/flow_runs/logs/%s", "failed to fetch logs for flow_run", 200}, // Python swallowed graph errors: no logs
	}
	for _, rt := range routes {
		msg := func(id string) string {
			if strings.Contains(rt.failMsg, "%s") {
				return fmt.Sprintf(rt.failMsg, id)
			}
			return rt.failMsg
		}
		t.Run(rt.path, func(t *testing.T) {
			t.Parallel()
			t.Run("non-UUID id is the route's 400 without a Prefect call", func(t *testing.T) {
				t.Parallel()
				fake, h := flowRunsAPI(t, newScenario().w)
				code, body := serveReads(t, h, "GET", fmt.Sprintf(rt.path, "not-a-uuid"), "")
				if code != 400 {
					t.Fatalf("status %d: %s", code, body)
				}
				assertJSON(t, body, fmt.Sprintf(`{"detail":%q}`, msg("not-a-uuid")))
				if len(fake.Calls()) != 0 {
					t.Fatalf("Prefect was called: %v", fake.Calls())
				}
			})
			t.Run("unknown flow run", func(t *testing.T) {
				t.Parallel()
				_, h := flowRunsAPI(t, newScenario().w)
				code, body := serveReads(t, h, "GET", fmt.Sprintf(rt.path, unknownID), "")
				if code != rt.unknown {
					t.Fatalf("status %d, want %d: %s", code, rt.unknown, body)
				}
				if code == 400 {
					assertJSON(t, body, fmt.Sprintf(`{"detail":%q}`, msg(unknownID)))
				} else {
					assertJSON(t, body, `{"offset":0,"logs":[]}`)
				}
			})
			t.Run("Prefect down is a 502", func(t *testing.T) {
				t.Parallel()
				fake, h := flowRunsAPI(t, newScenario().w)
				fake.Close()
				code, body := serveReads(t, h, "GET", fmt.Sprintf(rt.path, unknownID), "")
				if code != 502 || !strings.Contains(body, "Prefect is unreachable") {
					t.Fatalf("status %d: %s", code, body)
				}
			})
			t.Run("Prefect 503 then 200 succeeds", func(t *testing.T) {
				t.Parallel()
				s := newScenario()
				world := prefecttest.New(t)
				s.w.install(world)
				// In front of the world: the first call to every path answers 503.
				front := prefecttest.New(t)
				var seen sync.Map
				front.Handle("/", func(w http.ResponseWriter, r *http.Request) {
					if _, again := seen.LoadOrStore(r.Method+" "+r.URL.Path, true); !again {
						prefecttest.Write(w, 503, map[string]any{"exception_message": "Service Unavailable"})
						return
					}
					proxyTo(t, world, w, r)
				})
				h := apiWithClient(t, front.Client())
				code, body := serveReads(t, h, "GET", fmt.Sprintf(rt.path, s.r1.ID), "")
				if code != 200 {
					t.Fatalf("status %d: %s", code, body)
				}
				if len(front.Calls()) <= len(world.Calls()) {
					t.Fatalf("no call was retried: front %d, world %d", len(front.Calls()), len(world.Calls()))
				}
			})
		})
	}
}

func TestPrefectTimeoutIs504(t *testing.T) {
	t.Parallel()
	fake := prefecttest.New(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	fake.Handle("/", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	u, _ := url.Parse(fake.URL + "/api")
	h := apiWithClient(t, prefect.New(prefect.Config{BaseURL: u, Timeout: 50 * time.Millisecond,
		Retry: prefect.RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond}}))
	for _, path := range []string{
		"/proxy/flow_runs/" + unknownID + "/poll",
		"/proxy/flow_runs?deployment_id=" + testDep,
		"/proxy/flow_runs/graph/" + unknownID,
	} {
		code, body := serveReads(t, h, "GET", path, "")
		if code != 504 {
			t.Errorf("%s: status %d: %s", path, code, body)
		}
	}
}

// proxyTo forwards r to another fake (so a test can wrap the world's answers).
func proxyTo(t *testing.T, to *prefecttest.Server, w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, to.URL+r.URL.Path, r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("forward: %v", err)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		_, _ = w.Write(buf[:n])
		if err != nil {
			return
		}
	}
}

func TestSharedPoll(t *testing.T) {
	t.Parallel()
	fake, h := flowRunsAPI(t, nil)
	release := make(chan struct{})
	var n atomic.Int32
	fake.Handle("GET /flow_runs/{id}", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		<-release
		prefecttest.Write(w, 200, map[string]any{"id": r.PathValue("id")})
	})
	var wg sync.WaitGroup
	codes := make([]int, 10)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = serveReads(t, h, "GET", "/proxy/flow_runs/"+unknownID+"/poll", "")
		}()
	}
	time.Sleep(150 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("poll %d: %d", i, c)
		}
	}
	if n.Load() != 1 {
		t.Fatalf("10 identical concurrent polls made %d Prefect calls, want 1", n.Load())
	}
}

// TestReadsAnswerWithinPrefectTimeout: a read as a whole — retries, pages,
// fan-out levels — answers 502/503/504 within PREFECT_API_TIMEOUT, however
// many Prefect calls it makes (Django's own timeout is often only 5 s).
func TestReadsAnswerWithinPrefectTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 400 * time.Millisecond
	const margin = 450 * time.Millisecond // room for a loaded CI machine; without the bound these reads took 2-3 × the timeout
	reads := []struct{ method, path, body string }{
		{"GET", "/proxy/flow_runs/" + unknownID + "/poll", ""},
		{"GET", "/proxy/flow_runs/" + unknownID, ""},
		{"GET", "/proxy/flow_runs?deployment_id=" + testDep, ""},
		{"GET", "/proxy/flow_runs/graph/" + unknownID, ""},
		{"GET", "/proxy/flow_runs/logs/" + unknownID, ""},
		{"GET", "/proxy/flow_runs/v1/logs/" + unknownID, ""},
		{"GET", "/proxy/deployments/" + testDep, ""},
		{"POST", "/proxy/deployments/filter", `{"org_slug":"o","deployment_ids":["` + testDep + `"]}`},
		{"POST", "/proxy/flow_runs/late", `{}`},
		{"POST", "/proxy/flow_run/", `{"name":"x"}`},
		{"GET", "/proxy/v1/deployments/get_scheduled_flow_runs?deployment_id=" + testDep, ""},
		{"GET", "/proxy/flow_runs/long-running/2", ""},
		{"GET", "/proxy/blocks/secret/s", ""},
		{"GET", "/proxy/blocks/airbyte/server/s", ""},
		{"GET", "/proxy/blocks/airbyte/server/block/s", ""},
		{"POST", "/proxy/workers/filter/", `{}`},
	}
	client := func(t *testing.T, f *prefecttest.Server) *prefect.Client {
		u, _ := url.Parse(f.URL + "/api")
		return prefect.New(prefect.Config{BaseURL: u, Timeout: timeout,
			Retry: prefect.RetryPolicy{Attempts: 4, Base: 10 * time.Millisecond, Max: 10 * time.Millisecond}})
	}
	check := func(t *testing.T, h http.Handler, method, path, body string, want ...int) {
		t.Helper()
		start := time.Now()
		code, got := serveReads(t, h, method, path, body)
		elapsed := time.Since(start)
		if !slices.Contains(want, code) {
			t.Errorf("status %d, want one of %v: %s", code, want, got)
		}
		if elapsed > timeout+margin {
			t.Errorf("answered after %v; PREFECT_API_TIMEOUT is %v", elapsed, timeout)
		}
	}
	t.Run("a slow 503 is not retried past the timeout", func(t *testing.T) {
		t.Parallel()
		for _, rd := range reads {
			t.Run(rd.method+" "+rd.path, func(t *testing.T) {
				t.Parallel()
				fake := prefecttest.New(t)
				fake.Handle("/", func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-time.After(timeout * 3 / 4):
					case <-r.Context().Done():
						return
					}
					prefecttest.Write(w, 503, map[string]any{"exception_message": "Service Unavailable"})
				})
				check(t, apiWithClient(t, client(t, fake)), rd.method, rd.path, rd.body, 502, 503, 504)
			})
		}
	})
	t.Run("calls in sequence share one deadline", func(t *testing.T) {
		t.Parallel()
		s := newScenario()
		world := prefecttest.New(t)
		s.w.install(world)
		// Every call answers correctly, each in 60 % of the timeout: a read of
		// two or more sequential round trips runs out of time (route 21 for a
		// run two subflows deep, route 27 for a run with a subflow).
		front := prefecttest.New(t)
		front.Handle("/", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(timeout * 3 / 5):
			case <-r.Context().Done():
				return
			}
			proxyTo(t, world, w, r)
		})
		h := apiWithClient(t, client(t, front))
		for _, path := range []string{
			"/proxy/flow_runs/" + s.r1.ID,
			"/proxy/flow_runs/v1/logs/" + s.r1.ID,
			"/proxy/flow_runs?deployment_id=" + testDep,
		} {
			t.Run(path, func(t *testing.T) { check(t, h, "GET", path, "", 504) })
		}
	})
}

// Identical concurrent reads share one Prefect call and its error; reads that
// differ in a parameter (here the logs offset) never share.
func TestSharedReadKeys(t *testing.T) {
	t.Parallel()
	t.Run("an error is shared", func(t *testing.T) {
		t.Parallel()
		fake, h := flowRunsAPI(t, nil)
		release := make(chan struct{})
		var n atomic.Int32
		fake.Handle("GET /flow_runs/{id}", func(w http.ResponseWriter, _ *http.Request) {
			n.Add(1)
			<-release
			prefecttest.Write(w, 404, map[string]any{"detail": "Flow run not found"})
		})
		var wg sync.WaitGroup
		bodies := make([]string, 8)
		codes := make([]int, 8)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], bodies[i] = serveReads(t, h, "GET", "/proxy/flow_runs/"+unknownID+"/poll", "")
			}()
		}
		time.Sleep(150 * time.Millisecond)
		close(release)
		wg.Wait()
		for i := range codes {
			if codes[i] != 400 {
				t.Fatalf("poll %d: %d %s", i, codes[i], bodies[i])
			}
			assertJSON(t, bodies[i], `{"detail":"failed to fetch flow_run `+unknownID+`"}`)
		}
		if n.Load() != 1 {
			t.Fatalf("%d Prefect calls, want 1", n.Load())
		}
	})
	t.Run("different parameters are different reads", func(t *testing.T) {
		t.Parallel()
		fake, h := flowRunsAPI(t, nil)
		release := make(chan struct{})
		fake.JSON("GET /flow_runs/{id}/graph-v2", 200, map[string]any{"root_node_ids": []string{}, "nodes": []any{}})
		fake.Handle("POST /logs/filter", func(w http.ResponseWriter, _ *http.Request) {
			<-release
			prefecttest.Write(w, 200, []any{})
		})
		var wg sync.WaitGroup
		for _, q := range []string{"", "?offset=5", "?offset=5&limit=3", "?task_run_id=" + testDep} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, body := serveReads(t, h, "GET", "/proxy/flow_runs/logs/"+unknownID+q, ""); code != 200 {
					t.Errorf("%s: %d %s", q, code, body)
				}
			}()
		}
		time.Sleep(150 * time.Millisecond)
		close(release)
		wg.Wait()
		if n := len(fake.CallsTo("POST", "/logs/filter")); n != 4 {
			t.Fatalf("%d logs filter calls for 4 different reads, want 4", n)
		}
	})
}
