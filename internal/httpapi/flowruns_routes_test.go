package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

func TestFlowRunGraph(t *testing.T) {
	t.Parallel()
	s := newScenario()
	s.c1.Params = map[string]any{"payload": map[string]any{"connection_id": "conn-9"}}
	fake, h := flowRunsAPI(t, s.w)

	code, body := serveReads(t, h, "GET", "/proxy/flow_runs/graph/"+s.r1.ID, "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	// Node times from graph-v2; state and run times from the run objects;
	// flow-run labels lose their "<flow> / " prefix; parameters only when
	// the run has parameters.payload.
	assertJSON(t, body, fmt.Sprintf(`[
	 {"id":%q,"kind":"task-run","label":"t1","state_type":"COMPLETED","state_name":"Completed",
	  "start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:01:00Z","total_run_time":0.5,"estimated_run_time":0.25},
	 {"id":%q,"kind":"flow-run","label":"sub1-run","state_type":"COMPLETED","state_name":"Completed",
	  "start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:01:00Z","total_run_time":1.5,"estimated_run_time":2.5,
	  "parameters":{"connection_id":"conn-9"}}]`, s.t1.ID, s.c1.ID))
	// Runs are read with two batched filters, never one GET per node.
	if n := len(fake.CallsTo("POST", "/flow_runs/filter")); n != 1 {
		t.Errorf("flow_runs/filter calls = %d", n)
	}
	if n := len(fake.CallsTo("POST", "/task_runs/filter")); n != 1 {
		t.Errorf("task_runs/filter calls = %d", n)
	}
	if n := len(fake.CallsTo("GET", "/task_runs/"+s.t1.ID)); n != 0 {
		t.Errorf("per-node GETs: %d", n)
	}

	// Breadth-first from the roots along children; a node with two upstream
	// tasks is listed once.
	_, body = serveReads(t, h, "GET", "/proxy/flow_runs/graph/"+s.r2.ID, "")
	var labels []string
	for _, n := range mustJSON(t, body).([]any) {
		labels = append(labels, n.(map[string]any)["label"].(string))
	}
	if strings.Join(labels, ",") != "a,b,c" {
		t.Fatalf("order = %v, want a,b,c", labels)
	}

	// No task runs: an empty list.
	code, body = serveReads(t, h, "GET", "/proxy/flow_runs/graph/"+s.r3.ID, "")
	if code != 200 || body != "[]" {
		t.Fatalf("empty graph: %d %s", code, body)
	}
}

func TestFlowRunGraphWithoutRootNodes(t *testing.T) {
	t.Parallel()
	fake, h := flowRunsAPI(t, nil)
	fake.JSON("GET /flow_runs/{id}/graph-v2", 200, map[string]any{"nodes": []any{}})
	code, body := serveReads(t, h, "GET", "/proxy/flow_runs/graph/"+unknownID, "")
	if code != 200 || body != "[]" {
		t.Fatalf("%d %s", code, body)
	}
}

func TestFlowRunLogsByNode(t *testing.T) {
	t.Parallel()
	s := newScenario()
	fake, h := flowRunsAPI(t, s.w)
	code, body := serveReads(t, h, "GET", "/proxy/flow_runs/v1/logs/"+s.r1.ID, "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	// A task node gets its task run's logs; a subflow node every log of the
	// subflow run (its tasks' too), oldest first.
	assertJSON(t, body, fmt.Sprintf(`[
	 {"id":%q,"kind":"task-run","label":"t1","state_type":"COMPLETED","state_name":"Completed",
	  "start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:01:00Z",
	  "logs":[{"level":20,"timestamp":%q,"message":"t1 says"}]},
	 {"id":%q,"kind":"flow-run","label":"sub1-run","state_type":"COMPLETED","state_name":"Completed",
	  "start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:01:00Z",
	  "logs":[{"level":20,"timestamp":%q,"message":"c1 start"},{"level":20,"timestamp":%q,"message":"t3 says"}]}]`,
		s.t1.ID, s.w.logs[1].TS.Format(time.RFC3339Nano), s.c1.ID,
		s.w.logs[2].TS.Format(time.RFC3339Nano), s.w.logs[3].TS.Format(time.RFC3339Nano)))
	// Logs are one batched call (subflows by flow_run_id or tasks by
	// task_run_id), not one per node.
	calls := fake.CallsTo("POST", "/logs/filter")
	if len(calls) != 1 {
		t.Fatalf("logs/filter calls = %d, want 1", len(calls))
	}
	assertJSON(t, string(calls[0].Body), fmt.Sprintf(`{"limit":200,"offset":0,"sort":"TIMESTAMP_ASC",
		"logs":{"operator":"or_","flow_run_id":{"any_":[%q]},"task_run_id":{"any_":[%q]}}}`, s.c1.ID, s.t1.ID))
	// A node without logs has an empty list, not null.
	_, body = serveReads(t, h, "GET", "/proxy/flow_runs/v1/logs/"+s.r2.ID, "")
	if strings.Contains(body, `"logs":null`) || !strings.Contains(body, `"logs":[]`) {
		t.Fatalf("r2: %s", body)
	}
}

func TestFlowRunLogsByNodePagesPastTheCap(t *testing.T) {
	t.Parallel()
	w := &prefectWorld{}
	r := w.run(testDep, "r", "COMPLETED", "Completed")
	tk := w.task(r, "busy", "COMPLETED", "Completed")
	for i := range 450 {
		w.log(r, tk, fmt.Sprint("line ", i))
	}
	_, h := flowRunsAPI(t, w)
	_, body := serveReads(t, h, "GET", "/proxy/flow_runs/v1/logs/"+r.ID, "")
	logs := mustJSON(t, body).([]any)[0].(map[string]any)["logs"].([]any)
	if len(logs) != 450 || logs[449].(map[string]any)["message"] != "line 449" {
		t.Fatalf("%d logs (Python kept 200; every log is expected)", len(logs))
	}
}

func TestFlowRunLogsPaginated(t *testing.T) {
	t.Parallel()
	s := newScenario()
	for i := range 300 {
		s.w.log(s.r3, nil, fmt.Sprint("r3 line ", i))
	}
	msgs := func(body string) []string {
		var out []string
		for _, l := range mustJSON(t, body).(map[string]any)["logs"].([]any) {
			out = append(out, l.(map[string]any)["message"].(string))
		}
		return out
	}
	cases := []struct {
		name     string
		query    string
		wantCode int
		check    func(t *testing.T, body string)
	}{
		{"the run and its direct subflow, oldest first", "/proxy/flow_runs/logs/" + s.r1.ID, 200, func(t *testing.T, body string) {
			if got := strings.Join(msgs(body), "|"); got != "r1 start|t1 says|c1 start|t3 says|r1 end" {
				t.Fatalf("logs = %s", got)
			}
			assertJSON(t, body[:strings.Index(body, `,"logs"`)]+"}", `{"offset":0}`)
		}},
		{"offset and limit", "/proxy/flow_runs/logs/" + s.r1.ID + "?offset=1&limit=2", 200, func(t *testing.T, body string) {
			if got := strings.Join(msgs(body), "|"); got != "t1 says|c1 start" || !strings.HasPrefix(body, `{"offset":1,`) {
				t.Fatalf("page = %s", body)
			}
		}},
		{"task_run_id keeps that task's logs", "/proxy/flow_runs/logs/" + s.r1.ID + "?task_run_id=" + s.t3.ID + "&limit=0&offset=0", 200, func(t *testing.T, body string) {
			if got := strings.Join(msgs(body), "|"); got != "t3 says" {
				t.Fatalf("logs = %s", got)
			}
		}},
		{"an empty task_run_id is no filter", "/proxy/flow_runs/logs/" + s.r1.ID + "?task_run_id=", 200, func(t *testing.T, body string) {
			if len(msgs(body)) != 5 {
				t.Fatalf("logs = %v", msgs(body))
			}
		}},
		{"limit 0 is every log past Prefect's 200", "/proxy/flow_runs/logs/" + s.r3.ID + "?limit=0", 200, func(t *testing.T, body string) {
			if m := msgs(body); len(m) != 300 || m[299] != "r3 line 299" {
				t.Fatalf("%d logs", len(m))
			}
		}},
		{"limit above 200 is paged", "/proxy/flow_runs/logs/" + s.r3.ID + "?limit=250&offset=10", 200, func(t *testing.T, body string) {
			if m := msgs(body); len(m) != 250 || m[0] != "r3 line 10" {
				t.Fatalf("%d logs from %v", len(m), m[0])
			}
		}},
		{"negative offset is a 422", "/proxy/flow_runs/logs/" + s.r1.ID + "?offset=-1", 422, func(t *testing.T, body string) {
			assertJSON(t, body, `{"detail":[{"loc":["query","offset"],"msg":"Input should be greater than or equal to 0","type":"greater_than_equal"}]}`)
		}},
		{"negative limit is a 422", "/proxy/flow_runs/logs/" + s.r1.ID + "?limit=-5", 422, nil},
		{"a non-UUID task_run_id is the route's 400", "/proxy/flow_runs/logs/" + s.r1.ID + "?task_run_id=abc", 400, func(t *testing.T, body string) {
			assertJSON(t, body, `{"detail":"failed to fetch logs for flow_run"}`)
		}},
	}
	_, h := flowRunsAPI(t, s.w)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, body := serveReads(t, h, "GET", tc.query, "")
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tc.wantCode, body)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
}

func TestScheduledFlowRuns(t *testing.T) {
	t.Parallel()
	fake, h := flowRunsAPI(t, nil)
	fake.JSON("POST /flow_runs/filter", 200, []map[string]any{{"id": "a", "state_type": "SCHEDULED", "x": 0.0}})
	fake.JSON("POST /deployments/get_scheduled_flow_runs", 200, []any{})

	code, body := serveReads(t, h, "GET", "/proxy/v1/deployments/get_scheduled_flow_runs?deployment_id="+testDep, "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	assertJSON(t, body, `{"flow_runs":[{"id":"a","state_type":"SCHEDULED","x":0.0}]}`)
	calls := fake.CallsTo("POST", "/flow_runs/filter")
	if len(calls) != 1 {
		t.Fatalf("calls: %v", fake.Calls())
	}
	// Prefect's runner-polling filter and sort, without its READY side effect.
	assertJSON(t, string(calls[0].Body), `{"sort":"NEXT_SCHEDULED_START_TIME_ASC","limit":200,"offset":0,
		"deployments":{"id":{"any_":["`+testDep+`"]}},"flow_runs":{"state":{"type":{"any_":["SCHEDULED"]}}}}`)
	if n := len(fake.CallsTo("POST", "/deployments/get_scheduled_flow_runs")); n != 0 {
		t.Fatal("the runner-polling endpoint marks deployments READY and must not be called")
	}

	for _, tc := range []struct{ query, want string }{
		{"", `{"detail":[{"loc":["query","deployment_id"],"msg":"Field required","type":"missing"}]}`},
		{"?deployment_id=x", `{"detail":"failed to fetch scheduled flow-runs for deployment"}`},
	} {
		code, body := serveReads(t, h, "GET", "/proxy/v1/deployments/get_scheduled_flow_runs"+tc.query, "")
		if code/100 != 4 {
			t.Fatalf("%q: %d", tc.query, code)
		}
		assertJSON(t, body, tc.want)
	}
}

func TestFlowRunByName(t *testing.T) {
	t.Parallel()
	s := newScenario()
	cases := []struct {
		name, body string
		wantCode   int
		want       string
	}{
		{"found: Prefect's run plus status", `{"name":"r2"}`, 200, ""},
		{"not found", `{"name":"nope"}`, 400, `{"detail":"no such flow run"}`},
		{"missing name", `{}`, 422, `{"detail":[{"loc":["body","name"],"msg":"Field required","type":"missing"}]}`},
		{"name is not a string", `{"name":5}`, 422, `{"detail":[{"loc":["body","name"],"msg":"Input should be a valid string","type":"string_type"}]}`},
		{"no body", ``, 422, `{"detail":[{"loc":["body"],"msg":"Field required","type":"missing"}]}`},
	}
	fake, h := flowRunsAPI(t, s.w)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, body := serveReads(t, h, "POST", "/proxy/flow_run/", tc.body)
			if code != tc.wantCode {
				t.Fatalf("status %d: %s", code, body)
			}
			if tc.want != "" {
				assertJSON(t, body, tc.want)
				return
			}
			run := mustJSON(t, body).(map[string]any)["flow_run"].(map[string]any)
			if run["id"] != s.r2.ID || run["status"] != "FAILED" || run["deployment_id"] != testDep {
				t.Fatalf("flow_run = %v", run)
			}
		})
	}
	t.Run("filter body", func(t *testing.T) {
		serveReads(t, h, "POST", "/proxy/flow_run", `{"name":"r1"}`)
		var found bool
		for _, c := range fake.CallsTo("POST", "/flow_runs/filter") {
			if strings.Contains(string(c.Body), `"r1"`) {
				assertJSON(t, string(c.Body), `{"flow_runs":{"operator":"and_","name":{"any_":["r1"]}},"limit":1}`)
				found = true
			}
		}
		if !found {
			t.Fatal("no filter call")
		}
	})
}

func TestLateFlowRuns(t *testing.T) {
	t.Parallel()
	row := map[string]any{"id": "l1", "name": "late-1", "tags": []string{}, "start_time": nil,
		"expected_start_time": "2026-01-01T00:00:00Z", "total_run_time": 0.0, "estimated_run_time": 0.0,
		"work_queue_name": "ddp", "work_pool_name": "pool", "deployment_id": testDep, "state": map[string]any{"name": "Late"}}
	cases := []struct {
		name, body string
		wantCode   int
		wantResp   string
		wantFilter string // the Prefect body; "" = not called
	}{
		{"defaults: limit 1", `{}`, 200,
			`{"flow_runs":[{"id":"l1","name":"late-1","tags":[],"startTime":null,"expectedStartTime":"2026-01-01T00:00:00Z",
			 "totalRunTime":0.0,"estimatedRunTime":0.0,"workQueueName":"ddp","workPoolName":"pool","deployment_id":"` + testDep + `"}]}`,
			`{"sort":"START_TIME_DESC","limit":1,"offset":0,
			 "flow_runs":{"operator":"and_","state":{"name":{"any_":["Late"]}},"id":{"not_any_":[]}}}`},
		{"every filter", `{"deployment_id":"d","work_pool_name":"p","work_queue_name":"q","limit":5,
			"before_start_time":"2026-01-02T00:00:00+05:30","after_start_time":"2026-01-01 00:00:00",
			"exclude_flow_run_ids":["x"]}`, 200, "",
			`{"sort":"START_TIME_DESC","limit":5,"offset":0,"deployments":{"id":{"any_":["d"]}},
			 "work_pools":{"name":{"any_":["p"]}},"work_pool_queues":{"name":{"any_":["q"]}},
			 "flow_runs":{"operator":"and_","state":{"name":{"any_":["Late"]}},"id":{"not_any_":["x"]},
			  "expected_start_time":{"before_":"2026-01-01T18:30:00Z","after_":"2026-01-01T00:00:00Z"}}}`},
		{"limit 0 pages every late run", `{"limit":0,"deployment_id":null}`, 200, "",
			`{"sort":"START_TIME_DESC","limit":200,"offset":0,
			 "flow_runs":{"operator":"and_","state":{"name":{"any_":["Late"]}},"id":{"not_any_":[]}}}`},
		{"bad limit", `{"limit":"many"}`, 422,
			`{"detail":[{"loc":["body","limit"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing"}]}`, ""},
		{"bad datetime", `{"before_start_time":"yesterday"}`, 422,
			`{"detail":[{"loc":["body","before_start_time"],"msg":"Input should be a valid datetime or date, input is too short","type":"datetime_from_date_parsing"}]}`, ""},
		{"exclude ids must be strings", `{"exclude_flow_run_ids":[1]}`, 422,
			`{"detail":[{"loc":["body","exclude_flow_run_ids",0],"msg":"Input should be a valid string","type":"string_type"}]}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, h := flowRunsAPI(t, nil)
			fake.JSON("POST /flow_runs/filter", 200, []any{row})
			code, body := serveReads(t, h, "POST", "/proxy/flow_runs/late", tc.body)
			if code != tc.wantCode {
				t.Fatalf("status %d: %s", code, body)
			}
			if tc.wantResp != "" {
				assertJSON(t, body, tc.wantResp)
			}
			calls := fake.CallsTo("POST", "/flow_runs/filter")
			if tc.wantFilter == "" {
				if len(calls) != 0 {
					t.Fatal("Prefect was called")
				}
				return
			}
			assertJSON(t, string(calls[0].Body), tc.wantFilter)
		})
	}
	t.Run("Prefect rejects the filter", func(t *testing.T) {
		t.Parallel()
		fake, h := flowRunsAPI(t, nil)
		fake.JSON("POST /flow_runs/filter", 422, map[string]any{"exception_message": "Invalid request received."})
		code, body := serveReads(t, h, "POST", "/proxy/flow_runs/late", `{"exclude_flow_run_ids":["x"]}`)
		if code != 400 {
			t.Fatalf("%d %s", code, body)
		}
		assertJSON(t, body, `{"detail":"failed to fetch late flow runs"}`)
	})
}

func TestLongRunningFlowRuns(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, path string
		wantCode   int
		wantBefore string // start_time.before_ sent to Prefect; "now" = within a minute of now-2h
		wantBody   string
	}{
		{"start_time_str minus nhours", "/proxy/flow_runs/long-running/2?start_time_str=2026-03-01T10:00:00%2B02:00", 200,
			"2026-03-01T06:00:00Z", `{"flow_runs":[{"id":"a","parameters":{"config":{"org_slug":"o"}}}]}`},
		{"an unencoded + in start_time_str (decoded as a space) is still the offset",
			"/proxy/flow_runs/long-running/2?start_time_str=2026-03-01T10:00:00+02:00", 200, "2026-03-01T06:00:00Z", ""},
		{"naive start_time_str is UTC", "/proxy/flow_runs/long-running/1?start_time_str=2026-03-01T10:00:00", 200, "2026-03-01T09:00:00Z", ""},
		{"default is now", "/proxy/flow_runs/long-running/2", 200, "now", ""},
		{"nhours not an int", "/proxy/flow_runs/long-running/two", 422, "",
			`{"detail":[{"loc":["path","nhours"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing"}]}`},
		{"nhours out of range", "/proxy/flow_runs/long-running/99999999999", 422, "",
			`{"detail":[{"loc":["path","nhours"],"msg":"Input should be between -1000000 and 1000000","type":"less_than_equal"}]}`},
		{"bad start_time_str", "/proxy/flow_runs/long-running/2?start_time_str=noon", 422, "",
			`{"detail":[{"loc":["query","start_time_str"],"msg":"Input should be a valid ISO-8601 datetime","type":"datetime_parsing"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, h := flowRunsAPI(t, nil)
			fake.JSON("POST /flow_runs/filter", 200, []any{map[string]any{"id": "a", "parameters": map[string]any{"config": map[string]any{"org_slug": "o"}}}})
			code, body := serveReads(t, h, "GET", tc.path, "")
			if code != tc.wantCode {
				t.Fatalf("status %d: %s", code, body)
			}
			if tc.wantBody != "" {
				assertJSON(t, body, tc.wantBody)
			}
			calls := fake.CallsTo("POST", "/flow_runs/filter")
			if tc.wantBefore == "" {
				if len(calls) != 0 {
					t.Fatal("Prefect was called")
				}
				return
			}
			fr := obj(calls[0].JSON(t), "flow_runs")
			if got := anyOf(obj(fr, "state"), "type"); len(got) != 1 || got[0] != "RUNNING" {
				t.Fatalf("state filter = %v", fr)
			}
			before, _ := obj(fr, "start_time")["before_"].(string)
			if tc.wantBefore == "now" {
				bt, err := time.Parse(time.RFC3339Nano, before)
				if err != nil || time.Since(bt.Add(2*time.Hour)).Abs() > time.Minute {
					t.Fatalf("before_ = %q", before)
				}
				return
			}
			if before != tc.wantBefore {
				t.Fatalf("before_ = %q, want %q", before, tc.wantBefore)
			}
		})
	}
	t.Run("Prefect's rejection text is the 400 detail", func(t *testing.T) {
		t.Parallel()
		fake, h := flowRunsAPI(t, nil)
		fake.Handle("POST /flow_runs/filter", func(w http.ResponseWriter, _ *http.Request) {
			prefecttest.Write(w, 422, map[string]any{"exception_message": "Invalid request received."})
		})
		code, body := serveReads(t, h, "GET", "/proxy/flow_runs/long-running/2", "")
		if code != 400 || !strings.Contains(body, "Invalid request received.") {
			t.Fatalf("%d %s", code, body)
		}
	})
}

func TestGraphRoutesChunkManyNodes(t *testing.T) {
	t.Parallel()
	w := &prefectWorld{}
	r := w.run(testDep, "big", "COMPLETED", "Completed")
	for i := range 450 {
		tk := w.task(r, fmt.Sprint("t", i), "COMPLETED", "Completed")
		w.log(r, tk, fmt.Sprint("log of t", i))
	}
	fake, h := flowRunsAPI(t, w)
	for _, path := range []string{"/proxy/flow_runs/graph/", "/proxy/flow_runs/v1/logs/"} {
		code, body := serveReads(t, h, "GET", path+r.ID, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		nodes := mustJSON(t, body).([]any)
		if len(nodes) != 450 {
			t.Fatalf("%s: %d nodes", path, len(nodes))
		}
		for i, n := range nodes {
			m := n.(map[string]any)
			if m["label"] != fmt.Sprint("t", i) || m["state_name"] != "Completed" {
				t.Fatalf("%s: node %d = %v", path, i, m)
			}
			if logs, ok := m["logs"].([]any); ok && (len(logs) != 1 || logs[0].(map[string]any)["message"] != fmt.Sprint("log of t", i)) {
				t.Fatalf("%s: node %d logs = %v", path, i, logs)
			}
		}
	}
	// Every id filter carries at most 200 ids (bound parameters per statement).
	for _, c := range fake.Calls() {
		if c.Method != "POST" {
			continue
		}
		b := c.JSON(t)
		for _, f := range []map[string]any{obj(b, "task_runs"), obj(b, "logs")} {
			for _, k := range []string{"id", "task_run_id", "flow_run_id"} {
				if n := len(anyOf(f, k)); n > 200 {
					t.Fatalf("%s carries %d ids", c.Path, n)
				}
			}
		}
	}
}

// The fan-out reads ask together what does not depend on an earlier answer,
// and make no more Prefect calls than the sequential reads did. Each case's
// first calls are held until all of them have arrived: a read that waited for
// one before making another would hold them forever (and fail after 10 s).
func TestFanOutReadsCallsAndRoundTrips(t *testing.T) {
	t.Parallel()
	s := newScenario()
	graph := func(r *fakeRun) string { return "GET /flow_runs/" + r.ID + "/graph-v2" }
	const tasks, runs, logs = "POST /task_runs/filter", "POST /flow_runs/filter", "POST /logs/filter"
	cases := []struct {
		name  string
		path  string
		first []string       // asked at once
		calls map[string]int // all calls; before: what the sequential read made
	}{
		{"route 21: the run and its first two levels of task runs (before: 4 calls, 4 round trips)",
			"/proxy/flow_runs/" + s.r1.ID, []string{"GET /flow_runs/" + s.r1.ID, tasks},
			map[string]int{"GET /flow_runs/" + s.r1.ID: 1, tasks: 2}},
		{"route 21 without subflows: one round trip (before: 2)",
			"/proxy/flow_runs/" + s.r2.ID, []string{"GET /flow_runs/" + s.r2.ID, tasks},
			map[string]int{"GET /flow_runs/" + s.r2.ID: 1, tasks: 1}},
		{"route 28: graph-v2 with the task runs, then the subflow (before: 3 calls, 2 round trips)",
			"/proxy/flow_runs/graph/" + s.r1.ID, []string{graph(s.r1), tasks},
			map[string]int{graph(s.r1): 1, tasks: 1, runs: 1}},
		{"route 28 without subflows: one round trip (before: 2 calls, 2 round trips)",
			"/proxy/flow_runs/graph/" + s.r2.ID, []string{graph(s.r2), tasks},
			map[string]int{graph(s.r2): 1, tasks: 1}},
		{"route 27: graph-v2 with the task runs, then the subflow and every node's logs in one call (before: 5 calls)",
			"/proxy/flow_runs/v1/logs/" + s.r1.ID, []string{graph(s.r1), tasks},
			map[string]int{graph(s.r1): 1, tasks: 1, logs: 1, runs: 1}},
		{"route 27 without subflows (before: 3 calls)",
			"/proxy/flow_runs/v1/logs/" + s.r2.ID, []string{graph(s.r2), tasks},
			map[string]int{graph(s.r2): 1, tasks: 1, logs: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			world := prefecttest.New(t)
			s.w.install(world)
			var mu sync.Mutex
			waiting := map[string]bool{}
			for _, k := range tc.first {
				waiting[k] = true
			}
			all := make(chan struct{})
			front := prefecttest.New(t)
			front.Handle("/", func(w http.ResponseWriter, r *http.Request) {
				key := r.Method + " " + strings.TrimPrefix(r.URL.Path, "/api")
				mu.Lock()
				if waiting[key] {
					delete(waiting, key)
					if len(waiting) == 0 {
						close(all)
					}
				}
				mu.Unlock()
				select {
				case <-all:
				case <-time.After(10 * time.Second):
					t.Errorf("%s waited for %v: not asked at once", key, tc.first)
				}
				proxyTo(t, world, w, r)
			})
			code, body := serveReads(t, apiWithClient(t, front.Client()), "GET", tc.path, "")
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			got := map[string]int{}
			for _, c := range front.Calls() {
				got[c.Method+" "+strings.TrimPrefix(c.Path, "/api")]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.calls) {
				t.Fatalf("calls %v, want %v", got, tc.calls)
			}
		})
	}
}

// A guess that fails (a Prefect without the filter, a transient error) costs
// the calls by id the read would have made, never a different answer.
func TestFanOutReadsSurviveAFailedGuess(t *testing.T) {
	t.Parallel()
	s := newScenario()
	for _, path := range []string{"/proxy/flow_runs/graph/" + s.r1.ID, "/proxy/flow_runs/v1/logs/" + s.r1.ID} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			_, h := flowRunsAPI(t, s.w)
			_, want := serveReads(t, h, "GET", path, "")
			world := prefecttest.New(t)
			s.w.install(world)
			front := prefecttest.New(t)
			front.Handle("/", func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(b))
				body := string(b)
				if strings.HasSuffix(r.URL.Path, "/task_runs/filter") && strings.Contains(body, `"flow_runs"`) {
					prefecttest.Write(w, 422, map[string]any{"detail": "unknown filter"})
					return
				}
				proxyTo(t, world, w, r)
			})
			code, got := serveReads(t, apiWithClient(t, front.Client()), "GET", path, "")
			if code != 200 || got != want {
				t.Fatalf("%d %s\nwant %s", code, got, want)
			}
		})
	}
}
