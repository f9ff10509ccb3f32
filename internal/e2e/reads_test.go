package e2e

// End-to-end tests of every read route (routes 2, 3, 7, 8, 17, 18, 19, 20,
// 21, 22, 25, 26, 27, 28, 29, 34, 35, 37, numbered as on their handlers in
// internal/httpapi) through the real api binary against a real Prefect,
// checking the fields Django reads.

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

const unknownID = "00000000-0000-4000-8000-000000000000"

func TestPrefectVersion(t *testing.T) { // route 34
	t.Parallel()
	p, api := apiFor(t)
	got := send(t, "GET", api+"/proxy/prefect/version", nil).expect(t, 200).value(t)
	if got != p.Version {
		t.Errorf("version = %v, want %q", got, p.Version)
	}
}

func TestGetDeployment(t *testing.T) { // route 29
	t.Parallel()
	p, api := apiFor(t)
	org := testenv.Unique("org")
	params := map[string]any{"config": map[string]any{"org_slug": org, "continue_on_sync_failure": true,
		"tasks": []any{map[string]any{"slug": "dbt-run", "seq": 1.0, "orgtask_uuid": "u1", "type": "dbt", "env": map[string]any{}}}}}
	scheduled := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{org}, Cron: "0 1 * * *",
		Parameters: params, Entrypoint: "proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"})
	manual := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{org}})
	inactive := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{org}, Cron: "*/5 * * * *", ScheduleInactive: true})

	cases := []struct {
		name     string
		dep      testenv.Deployment
		cron     string
		active   bool
		params   map[string]any
		entry    any
		wantTags []any
	}{
		{"scheduled deployment shows its cron, active", scheduled, "0 1 * * *", true, params,
			"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5", []any{org}},
		{"manual deployment has an empty cron", manual, "", false, map[string]any{}, nil, []any{org}},
		{"inactive schedule is not active", inactive, "*/5 * * * *", false, map[string]any{}, nil, []any{org}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := send(t, "GET", api+"/proxy/deployments/"+tc.dep.ID, nil).expect(t, 200).object(t)
			hasKeys(t, d, "name", "deploymentId", "tags", "cron", "isScheduleActive", "parameters", "entrypoint")
			if d["name"] != tc.dep.Name || d["deploymentId"] != tc.dep.ID || d["cron"] != tc.cron ||
				d["isScheduleActive"] != tc.active || asJSON(d["parameters"]) != asJSON(tc.params) ||
				d["entrypoint"] != tc.entry || asJSON(d["tags"]) != asJSON(tc.wantTags) {
				t.Errorf("deployment = %v", d)
			}
		})
	}
	t.Run("unknown deployment gives 400", func(t *testing.T) {
		r := send(t, "GET", api+"/proxy/deployments/"+unknownID, nil).expect(t, 400)
		if d := r.detail(t); d != "failed to fetch deployment "+unknownID {
			t.Errorf("detail = %q", d)
		}
	})
	t.Run("non-UUID id gives a 4xx with detail", func(t *testing.T) {
		r := send(t, "GET", api+"/proxy/deployments/not-a-uuid", nil)
		if r.Status < 400 || r.Status > 499 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		r.detail(t)
	})
}

func TestFilterDeployments(t *testing.T) { // route 25
	t.Parallel()
	p, api := apiFor(t)
	org, other := testenv.Unique("org"), testenv.Unique("org")
	d1 := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{org}, Cron: "0 2 * * *"})
	d2 := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{org}})
	foreign := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{other}})

	r := send(t, "POST", api+"/proxy/deployments/filter",
		map[string]any{"org_slug": org, "deployment_ids": []string{d1.ID, d2.ID, foreign.ID}}).expect(t, 200).object(t)
	deps, _ := r["deployments"].([]any)
	got := map[string]map[string]any{}
	for _, d := range deps {
		m := d.(map[string]any)
		got[str(t, m, "deploymentId")] = m
	}
	if len(got) != 2 || got[d1.ID] == nil || got[d2.ID] == nil {
		t.Fatalf("deployments = %v, want %s and %s only", deps, d1.ID, d2.ID)
	}
	if got[d1.ID]["isScheduleActive"] != true || got[d2.ID]["isScheduleActive"] != false || got[d1.ID]["cron"] != "0 2 * * *" {
		t.Errorf("schedule fields: %v / %v", got[d1.ID], got[d2.ID])
	}

	empty := send(t, "POST", api+"/proxy/deployments/filter",
		map[string]any{"org_slug": org, "deployment_ids": []string{}}).expect(t, 200).object(t)
	if l, ok := empty["deployments"].([]any); !ok || len(l) != 0 {
		t.Errorf("empty id list: %v", empty)
	}
	r2 := send(t, "POST", api+"/proxy/deployments/filter", map[string]any{"org_slug": org, "deployment_ids": nil}).expect(t, 400)
	if d := r2.detail(t); d != "failed to filter deployments" {
		t.Errorf("null ids detail = %q", d)
	}
	send(t, "POST", api+"/proxy/deployments/filter", map[string]any{"deployment_ids": []string{}}).validation(t)
}

// history is a deployment with runs in every state, seeded for the flow-run
// read routes.
type history struct {
	org       string
	dep       testenv.Deployment
	completed testenv.FlowRun
	failed    testenv.FlowRun
	crashed   testenv.FlowRun
	cancelled testenv.FlowRun
	dbt       testenv.FlowRun // COMPLETED, with DBT_TEST_FAILED in a subflow's task run
	running   testenv.FlowRun
	scheduled testenv.FlowRun
	late      testenv.FlowRun
	pending   testenv.FlowRun
	// before the last two terminal runs started (for start_time_gt)
	midpoint time.Time
}

func seedHistory(t *testing.T, p *testenv.PrefectServer) history {
	t.Helper()
	h := history{org: testenv.Unique("org")}
	h.dep = p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{h.org}, Cron: "0 3 * * *",
		Parameters: map[string]any{"config": map[string]any{"org_slug": h.org, "tasks": []any{}}}})
	h.completed = p.CreateFlowRunIn(t, h.dep.ID, "COMPLETED", "")
	p.CreateTaskRun(t, h.completed.ID, "airbyte-sync", "COMPLETED", "")
	h.failed = p.CreateFlowRunIn(t, h.dep.ID, "FAILED", "")
	h.crashed = p.CreateFlowRunIn(t, h.dep.ID, "CRASHED", "")
	time.Sleep(50 * time.Millisecond)
	h.midpoint = time.Now().UTC()
	time.Sleep(50 * time.Millisecond)
	h.cancelled = p.CreateFlowRunIn(t, h.dep.ID, "CANCELLED", "")
	h.dbt = p.CreateFlowRunIn(t, h.dep.ID, "COMPLETED", "")
	sub := p.CreateSubflow(t, h.dbt.ID, "", "COMPLETED", "")
	p.CreateTaskRun(t, sub.RunID, "dbt-test", "COMPLETED", "DBT_TEST_FAILED")
	h.running = p.CreateFlowRunIn(t, h.dep.ID, "RUNNING", "")
	h.scheduled = p.CreateFlowRun(t, h.dep.ID, nil)
	h.late = p.CreateFlowRunIn(t, h.dep.ID, "SCHEDULED", "Late")
	h.pending = p.CreateFlowRunIn(t, h.dep.ID, "PENDING", "")
	return h
}

func TestFlowRunsOfDeployment(t *testing.T) { // route 19
	t.Parallel()
	p, api := apiFor(t)
	h := seedHistory(t, p)
	base := api + "/proxy/flow_runs?deployment_id=" + h.dep.ID

	runs := send(t, "GET", base, nil).expect(t, 200).object(t)["flow_runs"].([]any)
	// Terminal runs only, newest start first.
	want := []struct {
		run          testenv.FlowRun
		status, name string
	}{
		{h.dbt, "COMPLETED", "DBT_TEST_FAILED"},
		{h.cancelled, "CANCELLED", "Cancelled"},
		{h.crashed, "CRASHED", "Crashed"},
		{h.failed, "FAILED", "Failed"},
		{h.completed, "COMPLETED", "Completed"},
	}
	if len(runs) != len(want) {
		t.Fatalf("got %d runs, want %d: %v", len(runs), len(want), runs)
	}
	for i, w := range want {
		r := runs[i].(map[string]any)
		keys := make([]string, 0, len(r))
		for k := range r {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != "expectedStartTime,id,name,startTime,state_name,status,tags,totalRunTime" {
			t.Errorf("run %d keys = %v", i, keys)
		}
		if r["id"] != w.run.ID || r["name"] != w.run.Name || r["status"] != w.status || r["state_name"] != w.name {
			t.Errorf("run %d = %v, want id %s status %s state_name %s", i, r, w.run.ID, w.status, w.name)
		}
		if _, ok := r["totalRunTime"].(float64); !ok {
			t.Errorf("totalRunTime = %v", r["totalRunTime"])
		}
		if s, _ := r["startTime"].(string); s == "" {
			t.Errorf("startTime = %v", r["startTime"])
		}
	}

	t.Run("limit keeps the newest", func(t *testing.T) {
		runs := send(t, "GET", base+"&limit=2", nil).expect(t, 200).object(t)["flow_runs"].([]any)
		if len(runs) != 2 || runs[0].(map[string]any)["id"] != h.dbt.ID || runs[1].(map[string]any)["id"] != h.cancelled.ID {
			t.Errorf("limit=2: %v", runs)
		}
	})
	t.Run("start_time_gt keeps later runs", func(t *testing.T) {
		q := url.QueryEscape(h.midpoint.Format("2006-01-02T15:04:05.000000+00:00"))
		runs := send(t, "GET", base+"&limit=50&start_time_gt="+q, nil).expect(t, 200).object(t)["flow_runs"].([]any)
		if len(runs) != 2 {
			t.Errorf("start_time_gt: %d runs: %v", len(runs), runs)
		}
	})
	t.Run("start_time_gt with an unencoded + keeps later runs", func(t *testing.T) {
		// A raw "+" in a query string decodes to a space.
		q := h.midpoint.Format("2006-01-02T15:04:05.000000+00:00")
		runs := send(t, "GET", base+"&limit=50&start_time_gt="+q, nil).expect(t, 200).object(t)["flow_runs"].([]any)
		if len(runs) != 2 {
			t.Errorf("start_time_gt: %d runs: %v", len(runs), runs)
		}
	})
	t.Run("negative limit gives 422", func(t *testing.T) {
		send(t, "GET", base+"&limit=-1", nil).validation(t)
	})
	t.Run("non-integer limit gives 422", func(t *testing.T) {
		send(t, "GET", base+"&limit=abc", nil).validation(t)
	})
	t.Run("missing deployment_id gives 422", func(t *testing.T) {
		send(t, "GET", api+"/proxy/flow_runs", nil).validation(t)
	})
	t.Run("unknown deployment has no runs", func(t *testing.T) {
		r := send(t, "GET", api+"/proxy/flow_runs?deployment_id="+unknownID, nil).expect(t, 200).object(t)
		if l, ok := r["flow_runs"].([]any); !ok || len(l) != 0 {
			t.Errorf("unknown deployment: %v", r)
		}
	})
}

// checkRawFlowRun checks the Prefect fields Django reads from a single run.
func checkRawFlowRun(t *testing.T, r map[string]any, run testenv.FlowRun, dep testenv.Deployment, stateType, stateName string) {
	t.Helper()
	hasKeys(t, r, "id", "name", "deployment_id", "flow_id", "state_type", "state_name", "start_time",
		"expected_start_time", "end_time", "total_run_time", "parameters", "updated", "state")
	if r["id"] != run.ID || r["name"] != run.Name || r["deployment_id"] != dep.ID || r["flow_id"] != dep.Flow.ID ||
		r["state_type"] != stateType || r["state_name"] != stateName {
		t.Errorf("run = id %v name %v dep %v flow %v state %v/%v; want %s %s %s %s %s/%s", r["id"], r["name"],
			r["deployment_id"], r["flow_id"], r["state_type"], r["state_name"], run.ID, run.Name, dep.ID, dep.Flow.ID, stateType, stateName)
	}
	if _, ok := r["total_run_time"].(float64); !ok {
		t.Errorf("total_run_time = %v", r["total_run_time"])
	}
	cfg, _ := r["parameters"].(map[string]any)["config"].(map[string]any)
	if cfg == nil || cfg["org_slug"] == nil {
		t.Errorf("parameters.config.org_slug missing: %v", r["parameters"])
	}
}

func TestFlowRunAndPoll(t *testing.T) { // routes 21, 22
	t.Parallel()
	p, api := apiFor(t)
	h := seedHistory(t, p)
	cases := []struct {
		name            string
		run             testenv.FlowRun
		stateType, raw  string // state_type and Prefect's state name
		status, derived string // route 21's status and state_name
	}{
		{"completed", h.completed, "COMPLETED", "Completed", "COMPLETED", "Completed"},
		{"dbt test failure in a subflow", h.dbt, "COMPLETED", "Completed", "COMPLETED", "DBT_TEST_FAILED"},
		{"failed", h.failed, "FAILED", "Failed", "FAILED", "Failed"},
		{"running", h.running, "RUNNING", "Running", "RUNNING", "Running"},
		{"late", h.late, "SCHEDULED", "Late", "SCHEDULED", "Late"},
		{"pending", h.pending, "PENDING", "Pending", "PENDING", "Pending"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			full := send(t, "GET", api+"/proxy/flow_runs/"+tc.run.ID, nil).expect(t, 200).object(t)
			checkRawFlowRun(t, full, tc.run, h.dep, tc.stateType, tc.derived)
			if full["status"] != tc.status {
				t.Errorf("status = %v, want %s", full["status"], tc.status)
			}
			poll := send(t, "GET", api+"/proxy/flow_runs/"+tc.run.ID+"/poll", nil).expect(t, 200).object(t)
			checkRawFlowRun(t, poll, tc.run, h.dep, tc.stateType, tc.raw)
			if _, ok := poll["status"]; ok {
				t.Errorf("poll has a status key: %v", poll["status"])
			}
		})
	}
	for _, path := range []string{"/proxy/flow_runs/" + unknownID, "/proxy/flow_runs/" + unknownID + "/poll"} {
		t.Run("unknown run gives 400 "+path, func(t *testing.T) {
			r := send(t, "GET", api+path, nil).expect(t, 400)
			if d := r.detail(t); d != "failed to fetch flow_run "+unknownID {
				t.Errorf("detail = %q", d)
			}
		})
	}
	for _, path := range []string{"/proxy/flow_runs/not-a-uuid", "/proxy/flow_runs/not-a-uuid/poll"} {
		t.Run("non-UUID id gives a 4xx with detail "+path, func(t *testing.T) {
			r := send(t, "GET", api+path, nil)
			if r.Status < 400 || r.Status > 499 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			r.detail(t)
		})
	}
}

func TestFlowRunByName(t *testing.T) { // route 18
	t.Parallel()
	p, api := apiFor(t)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	run := p.CreateFlowRunIn(t, dep.ID, "FAILED", "")
	r := send(t, "POST", api+"/proxy/flow_run/", map[string]any{"name": run.Name}).expect(t, 200).object(t)
	fr, _ := r["flow_run"].(map[string]any)
	if fr == nil || fr["id"] != run.ID || fr["status"] != "FAILED" || fr["state_type"] != "FAILED" {
		t.Errorf("flow_run = %v", r)
	}
	miss := send(t, "POST", api+"/proxy/flow_run/", map[string]any{"name": testenv.Unique("nope")}).expect(t, 400)
	if d := miss.detail(t); d != "no such flow run" {
		t.Errorf("detail = %q", d)
	}
	send(t, "POST", api+"/proxy/flow_run/", map[string]any{}).validation(t)
}

func TestLateFlowRuns(t *testing.T) { // route 20
	t.Parallel()
	p, api := apiFor(t)
	pool := testenv.Unique("pool")
	p.CreateWorkPool(t, pool, "ddp")
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{WorkPool: pool, WorkQueue: "ddp"})
	late1 := p.CreateFlowRunIn(t, dep.ID, "SCHEDULED", "Late")
	late2 := p.CreateFlowRunIn(t, dep.ID, "SCHEDULED", "Late")
	p.CreateFlowRun(t, dep.ID, nil) // scheduled, not late

	r := send(t, "POST", api+"/proxy/flow_runs/late", map[string]any{"deployment_id": dep.ID, "limit": 10}).expect(t, 200).object(t)
	runs, _ := r["flow_runs"].([]any)
	if len(runs) != 2 {
		t.Fatalf("late runs = %v", runs)
	}
	ids := map[any]bool{}
	for _, x := range runs {
		m := x.(map[string]any)
		hasKeys(t, m, "id", "name", "tags", "startTime", "expectedStartTime", "totalRunTime", "estimatedRunTime",
			"workQueueName", "workPoolName", "deployment_id")
		if m["workPoolName"] != pool || m["workQueueName"] != "ddp" || m["deployment_id"] != dep.ID {
			t.Errorf("late run = %v", m)
		}
		ids[m["id"]] = true
	}
	if !ids[late1.ID] || !ids[late2.ID] {
		t.Errorf("ids = %v", ids)
	}
	def := send(t, "POST", api+"/proxy/flow_runs/late", map[string]any{"deployment_id": dep.ID}).expect(t, 200).object(t)
	if l, _ := def["flow_runs"].([]any); len(l) != 1 {
		t.Errorf("default limit 1: %v", def)
	}
	ex := send(t, "POST", api+"/proxy/flow_runs/late", map[string]any{"deployment_id": dep.ID, "limit": 10,
		"exclude_flow_run_ids": []string{late1.ID}, "work_pool_name": pool, "work_queue_name": "ddp"}).expect(t, 200).object(t)
	if l, _ := ex["flow_runs"].([]any); len(l) != 1 || l[0].(map[string]any)["id"] != late2.ID {
		t.Errorf("exclude: %v", ex)
	}
}

func TestScheduledFlowRuns(t *testing.T) { // route 17
	t.Parallel()
	p, api := apiFor(t)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	sched := p.CreateFlowRun(t, dep.ID, nil)
	p.CreateFlowRunIn(t, dep.ID, "COMPLETED", "")
	r := send(t, "GET", api+"/proxy/v1/deployments/get_scheduled_flow_runs?deployment_id="+dep.ID, nil).expect(t, 200).object(t)
	runs, _ := r["flow_runs"].([]any)
	if len(runs) != 1 || runs[0].(map[string]any)["id"] != sched.ID || runs[0].(map[string]any)["state_type"] != "SCHEDULED" {
		t.Errorf("scheduled runs = %v", runs)
	}
	// A read must not act as a polling runner: the deployment stays NOT_READY.
	var d map[string]any
	p.Do(t, "GET", "/deployments/"+dep.ID, nil, &d)
	if d["status"] == "READY" {
		t.Errorf("deployment marked READY by a read")
	}
	send(t, "GET", api+"/proxy/v1/deployments/get_scheduled_flow_runs", nil).validation(t)
}

// logWorld is a run with 250 flow-level logs, a task run with 5 logs, a
// DBT_TEST_FAILED task run and a subflow (with a payload) with 3 logs.
type logWorld struct {
	run  testenv.FlowRun
	task string
	dbt  string
	sub  testenv.Subflow
}

func seedLogs(t *testing.T, p *testenv.PrefectServer) logWorld {
	t.Helper()
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	w := logWorld{run: p.CreateFlowRunIn(t, dep.ID, "COMPLETED", "")}
	w.task = p.CreateTaskRun(t, w.run.ID, "airbyte-sync", "COMPLETED", "")
	w.dbt = p.CreateTaskRun(t, w.run.ID, "dbt-test", "COMPLETED", "DBT_TEST_FAILED")
	w.sub = p.CreateSubflowWith(t, w.run.ID, testenv.SubflowSpec{Type: "FAILED",
		Parameters: map[string]any{"payload": map[string]any{"connection_id": "c-123", "name": "conn"}}})
	t0 := time.Now().Add(-time.Hour)
	p.WriteLogs(t, w.run.ID, "", "line", 250, t0)
	p.WriteLogs(t, w.run.ID, w.task, "task", 5, t0.Add(time.Minute))
	p.WriteLogs(t, w.sub.RunID, "", "sub", 3, t0.Add(2*time.Minute))
	return w
}

func logMessages(t *testing.T, page map[string]any) []string {
	t.Helper()
	logs, ok := page["logs"].([]any)
	if !ok {
		t.Fatalf("logs = %v", page)
	}
	out := make([]string, len(logs))
	for i, l := range logs {
		m := l.(map[string]any)
		if len(m) != 3 {
			t.Errorf("log keys = %v, want level, timestamp, message", m)
		}
		if _, ok := m["level"].(float64); !ok {
			t.Errorf("level = %v", m["level"])
		}
		if _, ok := m["timestamp"].(string); !ok {
			t.Errorf("timestamp = %v", m["timestamp"])
		}
		out[i], _ = m["message"].(string)
	}
	return out
}

func TestFlowRunLogs(t *testing.T) { // route 26
	t.Parallel()
	p, api := apiFor(t)
	w := seedLogs(t, p)
	base := api + "/proxy/flow_runs/logs/" + w.run.ID

	t.Run("Django's API form returns every log, oldest first", func(t *testing.T) {
		page := send(t, "GET", base+"?offset=0&limit=0&task_run_id=", nil).expect(t, 200).object(t)
		msgs := logMessages(t, page)
		if page["offset"] != 0.0 || len(msgs) != 258 || msgs[0] != "line 0000" || msgs[249] != "line 0249" ||
			msgs[250] != "task 0000" || msgs[257] != "sub 0002" {
			t.Errorf("offset %v, %d logs: first %q", page["offset"], len(msgs), msgs[:min(3, len(msgs))])
		}
	})
	t.Run("pages of 200 as Django's recursion reads them", func(t *testing.T) {
		first := logMessages(t, send(t, "GET", base+"?limit=200", nil).expect(t, 200).object(t))
		page2 := send(t, "GET", base+"?limit=200&offset=200", nil).expect(t, 200).object(t)
		second := logMessages(t, page2)
		if len(first) != 200 || first[199] != "line 0199" || len(second) != 58 || second[0] != "line 0200" || page2["offset"] != 200.0 {
			t.Errorf("pages: %d (last %q), %d (first %q), offset %v", len(first), first[len(first)-1], len(second), second[0], page2["offset"])
		}
	})
	t.Run("task_run_id keeps that task's logs", func(t *testing.T) {
		msgs := logMessages(t, send(t, "GET", base+"?task_run_id="+w.task, nil).expect(t, 200).object(t))
		if len(msgs) != 5 || msgs[0] != "task 0000" {
			t.Errorf("task logs = %v", msgs)
		}
	})
	t.Run("negative limit gives 422", func(t *testing.T) { send(t, "GET", base+"?limit=-1", nil).validation(t) })
	t.Run("negative offset gives 422", func(t *testing.T) { send(t, "GET", base+"?offset=-5", nil).validation(t) })
}

func TestFlowRunLogsByNode(t *testing.T) { // route 27
	t.Parallel()
	p, api := apiFor(t)
	w := seedLogs(t, p)
	nodes := send(t, "GET", api+"/proxy/flow_runs/v1/logs/"+w.run.ID, nil).expect(t, 200).list(t)
	byID := map[string]map[string]any{}
	for _, n := range nodes {
		m := n.(map[string]any)
		hasKeys(t, m, "id", "kind", "label", "state_type", "state_name", "start_time", "end_time", "logs")
		byID[str(t, m, "id")] = m
	}
	task, sub, dbt := byID[w.task], byID[w.sub.RunID], byID[w.dbt]
	if task == nil || sub == nil || dbt == nil {
		t.Fatalf("nodes = %v", nodes)
	}
	if task["kind"] != "task-run" || len(logMessages(t, task)) != 5 {
		t.Errorf("task node = %v", task)
	}
	if sub["kind"] != "flow-run" || sub["label"] != w.sub.RunName || sub["state_type"] != "FAILED" || len(logMessages(t, sub)) != 3 {
		t.Errorf("subflow node = %v (want label %q)", sub, w.sub.RunName)
	}
	if dbt["state_name"] != "DBT_TEST_FAILED" {
		t.Errorf("dbt node = %v", dbt)
	}
	// Python's graph-v2 GET failed for an unknown run: the route's 400.
	r := send(t, "GET", api+"/proxy/flow_runs/v1/logs/"+unknownID, nil).expect(t, 400)
	if d := r.detail(t); d != "failed to fetch logs for flow_run" {
		t.Errorf("detail = %q", d)
	}
}

func TestFlowRunGraph(t *testing.T) { // route 28
	t.Parallel()
	p, api := apiFor(t)
	w := seedLogs(t, p)
	nodes := send(t, "GET", api+"/proxy/flow_runs/graph/"+w.run.ID, nil).expect(t, 200).list(t)
	byID := map[string]map[string]any{}
	for _, n := range nodes {
		m := n.(map[string]any)
		hasKeys(t, m, "id", "kind", "label", "state_type", "state_name", "start_time", "end_time",
			"total_run_time", "estimated_run_time")
		byID[str(t, m, "id")] = m
	}
	sub, task, dbt := byID[w.sub.RunID], byID[w.task], byID[w.dbt]
	if sub == nil || task == nil || dbt == nil {
		t.Fatalf("nodes = %v", nodes)
	}
	// Django's history reads parameters["connection_id"] of flow-run nodes.
	if sub["kind"] != "flow-run" || sub["label"] != w.sub.RunName || sub["state_type"] != "FAILED" ||
		asJSON(sub["parameters"]) != `{"connection_id":"c-123","name":"conn"}` {
		t.Errorf("subflow node = %v", sub)
	}
	if _, ok := task["parameters"]; ok || task["kind"] != "task-run" || task["state_type"] != "COMPLETED" {
		t.Errorf("task node = %v", task)
	}
	if dbt["state_name"] != "DBT_TEST_FAILED" || dbt["state_type"] != "COMPLETED" {
		t.Errorf("dbt node = %v", dbt)
	}
	r := send(t, "GET", api+"/proxy/flow_runs/graph/"+unknownID, nil).expect(t, 400)
	if d := r.detail(t); d != "failed to fetch graph for flow_run" {
		t.Errorf("detail = %q", d)
	}
}

func TestLongRunningFlowRuns(t *testing.T) { // route 35
	t.Parallel()
	p, api := apiFor(t)
	org := testenv.Unique("org")
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{Parameters: map[string]any{"config": map[string]any{"org_slug": org}}})
	running := p.CreateFlowRunIn(t, dep.ID, "RUNNING", "")
	done := p.CreateFlowRunIn(t, dep.ID, "COMPLETED", "")
	// Runs started before start_time_str - nhours: "now + 2h" - 1h covers
	// the run that just started.
	at := url.QueryEscape(time.Now().UTC().Add(2 * time.Hour).Format(time.RFC3339))
	r := send(t, "GET", api+"/proxy/flow_runs/long-running/1?start_time_str="+at, nil).expect(t, 200).object(t)
	found := false
	for _, x := range r["flow_runs"].([]any) {
		m := x.(map[string]any)
		if m["id"] == done.ID {
			t.Errorf("a completed run is listed")
		}
		if m["id"] == running.ID {
			found = true
			if asJSON(m["parameters"]) != asJSON(map[string]any{"config": map[string]any{"org_slug": org}}) {
				t.Errorf("parameters = %v", m["parameters"])
			}
		}
	}
	if !found {
		t.Errorf("running run %s not listed", running.ID)
	}
	// Without start_time_str, a run that started a moment ago is not 1 h old.
	now := send(t, "GET", api+"/proxy/flow_runs/long-running/1", nil).expect(t, 200).object(t)
	for _, x := range now["flow_runs"].([]any) {
		if x.(map[string]any)["id"] == running.ID {
			t.Errorf("a fresh run is listed as long-running")
		}
	}
	t.Run("non-integer hours gives 422", func(t *testing.T) {
		send(t, "GET", api+"/proxy/flow_runs/long-running/two", nil).validation(t)
	})
	t.Run("bad start_time_str gives 422", func(t *testing.T) {
		send(t, "GET", api+"/proxy/flow_runs/long-running/2?start_time_str=yesterday", nil).validation(t)
	})
}

func TestSecretBlocks(t *testing.T) { // routes 7, 8
	t.Parallel()
	p, api := apiFor(t)
	name := testenv.Unique("secret")
	id := p.CreateSecretBlock(t, name, `{"wtype": "postgres", "creds": {"password": "pw"}}`)
	plain := testenv.Unique("secret")
	p.CreateSecretBlock(t, plain, "https://token@github.com/org/repo.git")

	t.Run("lookup cleans the name", func(t *testing.T) {
		// Upper case and underscores are dropped before the lookup.
		asked := strings.ToUpper(name[:3]) + "_" + name[3:]
		r := send(t, "GET", api+"/proxy/blocks/secret/"+asked, nil).expect(t, 200).object(t)
		if r["block_id"] != id || r["block_name"] != name {
			t.Errorf("secret block = %v, want %s %s", r, id, name)
		}
	})
	t.Run("missing block gives 404", func(t *testing.T) {
		missing := testenv.Unique("nosecret")
		r := send(t, "GET", api+"/proxy/blocks/secret/"+missing, nil).expect(t, 404)
		if d := r.detail(t); d != "no secret block named "+missing {
			t.Errorf("detail = %q", d)
		}
	})
	t.Run("contents are off without a token", func(t *testing.T) {
		send(t, "GET", api+"/proxy/blocks/secret/"+name+"/contents", nil).expect(t, 403).detail(t)
	})
	t.Run("contents with the api token", func(t *testing.T) {
		const token = "e2e-token"
		proc := testenv.StartAPI(t, map[string]string{"PREFECT_API_URL": p.URL, "PROXY_API_TOKEN": token})
		api := proc.URL
		defer func() {
			// Secret values and the api token never reach the logs.
			logs := proc.Logs()
			for _, secret := range []string{"token@github.com", `"pw"`, token} {
				if strings.Contains(logs, secret) {
					t.Errorf("api logs contain %q", secret)
				}
			}
		}()
		auth := []string{"Authorization", "Bearer " + token}
		obj := send(t, "GET", api+"/proxy/blocks/secret/"+name+"/contents", nil, auth...).expect(t, 200).value(t)
		if asJSON(obj) != `{"creds":{"password":"pw"},"wtype":"postgres"}` {
			t.Errorf("JSON secret = %v", obj)
		}
		s := send(t, "GET", api+"/proxy/blocks/secret/"+plain+"/contents", nil, auth...).expect(t, 200).value(t)
		if s != "https://token@github.com/org/repo.git" {
			t.Errorf("string secret = %v", s)
		}
		send(t, "GET", api+"/proxy/blocks/secret/"+testenv.Unique("nosecret")+"/contents", nil, auth...).expect(t, 404)
		send(t, "GET", api+"/proxy/blocks/secret/"+name+"/contents", nil).expect(t, 401).detail(t)
		send(t, "GET", api+"/proxy/blocks/secret/"+name, nil, "Authorization", "Bearer wrong").expect(t, 401).detail(t)
		send(t, "GET", api+"/proxy/prefect/version", nil, auth...).expect(t, 200)
	})
}

func TestAirbyteServerBlock(t *testing.T) { // routes 2, 3
	t.Parallel()
	_, api := apiFor(t)
	name := testenv.Unique("airbyte")

	t.Run("missing block id is null, not 404", func(t *testing.T) {
		r := send(t, "GET", api+"/proxy/blocks/airbyte/server/"+testenv.Unique("none"), nil).expect(t, 200).object(t)
		if v, ok := r["block_id"]; !ok || v != nil {
			t.Errorf("body = %v, want block_id null", r)
		}
	})
	t.Run("missing block config is 404", func(t *testing.T) {
		send(t, "GET", api+"/proxy/blocks/airbyte/server/block/"+testenv.Unique("none"), nil).expect(t, 404).detail(t)
	})

	// Seeded through the proxy's own create route, which registers the
	// airbyte-server block type on a fresh Prefect.
	created := send(t, "POST", api+"/proxy/blocks/airbyte/server/", map[string]any{
		"blockName": name, "serverHost": "airbyte.local", "serverPort": "8001", "apiVersion": "v1", "useSSL": false,
	}).expect(t, 200).object(t)
	id := str(t, created, "block_id")

	got := send(t, "GET", api+"/proxy/blocks/airbyte/server/"+name, nil).expect(t, 200).object(t)
	if got["block_id"] != id {
		t.Errorf("block_id = %v, want %s", got["block_id"], id)
	}
	cfg := send(t, "GET", api+"/proxy/blocks/airbyte/server/block/"+name, nil).expect(t, 200).object(t)
	token := base64.StdEncoding.EncodeToString([]byte("airbyte:password"))
	if cfg["host"] != "airbyte.local" || cfg["port"] != 8001.0 || cfg["version"] != "v1" || cfg["token"] != token {
		t.Errorf("config = %v", cfg)
	}
}

func TestWorkersFilter(t *testing.T) { // route 37
	t.Parallel()
	p, api := apiFor(t)
	pool, idle := testenv.Unique("pool"), testenv.Unique("pool")
	p.CreateWorkPool(t, pool, "ddp")
	p.CreateWorkPool(t, idle, "")
	p.WorkerHeartbeat(t, pool, "worker-1")
	p.WorkerHeartbeat(t, pool, "worker-2")
	cases := []struct {
		name string
		body map[string]any
		want float64
	}{
		{"online workers of the pool", map[string]any{"work_pool_names": []string{pool}}, 2},
		{"queue names cannot narrow the count", map[string]any{"work_pool_names": []string{pool}, "work_queue_names": []string{"ddp"}}, 2},
		{"a pool without workers", map[string]any{"work_pool_names": []string{idle}}, 0},
		{"several pools add up", map[string]any{"work_pool_names": []string{pool, idle}}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, "POST", api+"/proxy/workers/filter/", tc.body).expect(t, 200).object(t)
			if r["count"] != tc.want {
				t.Errorf("count = %v, want %v", r["count"], tc.want)
			}
		})
	}
}

// TestTrailingSlashForms checks both slash forms reach the same route with no
// redirect (Django calls the exact declared forms).
func TestTrailingSlashForms(t *testing.T) {
	t.Parallel()
	_, api := apiFor(t)
	for _, path := range []string{"/proxy/prefect/version", "/proxy/prefect/version/"} {
		r := send(t, "GET", api+path, nil)
		if r.Status != http.StatusOK {
			t.Errorf("%s: %d %s", path, r.Status, r.Body)
		}
	}
}

// TestFilterDeploymentsPagesPast200 checks the deployment filter returns
// every match, not Prefect's first 200 (the Python proxy truncated silently).
func TestFilterDeploymentsPagesPast200(t *testing.T) { // route 25
	t.Parallel()
	p, api := apiFor(t)
	org := testenv.Unique("org")
	flow := p.CreateFlow(t, "")
	ids := make([]string, 0, 205)
	for i := 0; i < 205; i++ {
		var out struct{ ID string }
		p.Do(t, "POST", "/deployments/", map[string]any{"name": testenv.Unique("dep"), "flow_id": flow.ID, "tags": []string{org}}, &out)
		ids = append(ids, out.ID)
	}
	r := send(t, "POST", api+"/proxy/deployments/filter", map[string]any{"org_slug": org, "deployment_ids": ids}).expect(t, 200).object(t)
	deps, _ := r["deployments"].([]any)
	seen := map[any]bool{}
	for _, d := range deps {
		seen[d.(map[string]any)["deploymentId"]] = true
	}
	if len(deps) != 205 || len(seen) != 205 {
		t.Errorf("got %d deployments (%d distinct), want 205", len(deps), len(seen))
	}
}
