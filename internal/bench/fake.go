package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// The templates are real Prefect 3.6.29 answers (GET /flow_runs/{id} and
// GET /task_runs/{id}), so the fake's bodies have Prefect's size and shape.
const flowRunTemplate = `{"id":"","created":"2026-11-27T11:50:58.834307Z","updated":"2026-11-27T11:50:58.839000Z","name":"glossy-shark","flow_id":"","state_id":"01a21cd8-2c12-7065-b7d4-4bafe0069779","deployment_id":null,"deployment_version":null,"work_queue_id":null,"work_queue_name":null,"flow_version":null,"parameters":{},"idempotency_key":null,"context":{},"empirical_policy":{"max_retries":0,"retry_delay_seconds":0.0,"retries":null,"retry_delay":null,"pause_keys":[],"resuming":false,"retry_type":null},"tags":[],"labels":{},"parent_task_run_id":null,"state_type":"COMPLETED","state_name":"Completed","run_count":1,"expected_start_time":"2026-11-27T11:50:58.834188Z","next_scheduled_start_time":null,"start_time":"2026-11-27T11:50:58.834188Z","end_time":"2026-11-27T11:51:58.834188Z","total_run_time":60.0,"estimated_run_time":60.0,"estimated_start_time_delta":0.5,"auto_scheduled":false,"infrastructure_document_id":null,"infrastructure_pid":null,"created_by":null,"work_pool_id":null,"work_pool_name":null,"state":{"id":"01a21cd8-2c12-7065-b7d4-4bafe0069779","type":"COMPLETED","name":"Completed","timestamp":"2026-11-27T11:51:58.834188Z","message":null,"data":null,"state_details":{"flow_run_id":"","task_run_id":null,"child_flow_run_id":null,"scheduled_time":null,"cache_key":null,"cache_expiration":null,"deferred":false,"untrackable_result":false,"pause_timeout":null,"pause_reschedule":false,"pause_key":null,"run_input_keyset":null,"refresh_cache":null,"retriable":null,"transition_id":null,"task_parameters_id":null,"traceparent":null,"deployment_concurrency_lease_id":null}},"job_variables":{}}`

const taskRunTemplate = `{"id":"","created":"2026-11-27T11:50:59.075856Z","updated":"2026-11-27T11:51:03.485000Z","name":"subflow-task","flow_run_id":"","task_key":"sub","dynamic_key":"0","cache_key":null,"cache_expiration":null,"task_version":null,"empirical_policy":{"max_retries":0,"retry_delay_seconds":0.0,"retries":null,"retry_delay":null,"retry_jitter_factor":null},"tags":[],"labels":{},"state_id":"01a21cd8-3e2d-7008-8f47-9a5b822bc810","task_inputs":{},"state_type":"COMPLETED","state_name":"Completed","run_count":1,"flow_run_run_count":1,"expected_start_time":"2026-11-27T11:50:59.075550Z","next_scheduled_start_time":null,"start_time":"2026-11-27T11:51:03.469635Z","end_time":"2026-11-27T11:51:03.469635Z","total_run_time":1.0,"estimated_run_time":1.0,"estimated_start_time_delta":0.1,"state":{"id":"01a21cd8-3e2d-7008-8f47-9a5b822bc810","type":"COMPLETED","name":"Completed","timestamp":"2026-11-27T11:51:03.469635Z","message":null,"data":null,"state_details":{"flow_run_id":"","task_run_id":"","child_flow_run_id":null,"scheduled_time":null,"cache_key":null,"cache_expiration":null,"deferred":false,"untrackable_result":false,"pause_timeout":null,"pause_reschedule":false,"pause_key":null,"run_input_keyset":null,"refresh_cache":null,"retriable":null,"transition_id":null,"task_parameters_id":null,"traceparent":null,"deployment_concurrency_lease_id":null}}}`

// flowRun is one run of the fake world.
type flowRun struct {
	id, name        string
	parentTaskRunID string // set on subflow runs
	parentRunID     string // the run holding parentTaskRunID
	stateType       string
	start           time.Time
	body            []byte // GET /flow_runs/{id}
}

// taskRun is one task run; child is set on the task standing for a subflow.
type taskRun struct {
	id, flowRunID, name, stateName, stateType string
	child                                     string
	start                                     time.Time
	body                                      []byte
}

// World is a deployment's history as Prefect stores it: Runs top-level flow
// runs (newest first), each with TasksPerRun task runs and one subflow run
// (reached through a task run whose state names it, as Prefect records
// subflows) that has TasksPerRun task runs of its own.
type World struct {
	DeploymentID string
	FlowID       string
	Runs         []string // top-level run ids, newest first

	runs      map[string]*flowRun
	order     []string // every run id: top-level newest first, then subflows
	tasks     map[string]*taskRun
	taskOrder []string
	tasksOf   map[string][]*taskRun // by flow run id
	logs      []*logLine            // oldest first
}

// logLine is one log of a task run (LogsPerTask per task run).
type logLine struct {
	flowRunID, taskRunID string
	ts                   time.Time
	body                 []byte
}

// LogsPerTask is how many log lines each task run of a World has.
const LogsPerTask = 20

// NewWorld generates a world. Every 10th run fails; every 7th has a task run
// named DBT_TEST_FAILED inside its subflow, so the final-state logic has work.
func NewWorld(runs, tasksPerRun int) *World {
	w := &World{
		DeploymentID: uuid.NewString(),
		FlowID:       uuid.NewString(),
		runs:         map[string]*flowRun{},
		tasks:        map[string]*taskRun{},
		tasksOf:      map[string][]*taskRun{},
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var subflows []string
	for i := 0; i < runs; i++ {
		start := now.Add(-time.Duration(i) * time.Hour)
		state := "COMPLETED"
		if i%10 == 9 {
			state = "FAILED"
		}
		top := &flowRun{id: uuid.NewString(), name: fmt.Sprintf("run-%03d", i), stateType: state, start: start}
		w.addRun(top)
		w.Runs = append(w.Runs, top.id)
		for j := 0; j < tasksPerRun; j++ {
			w.addTask(&taskRun{id: uuid.NewString(), flowRunID: top.id, name: fmt.Sprintf("task-%d", j),
				stateName: "Completed", stateType: "COMPLETED", start: start.Add(time.Duration(j) * time.Second)})
		}
		sub := &flowRun{id: uuid.NewString(), name: fmt.Sprintf("run-%03d-sub", i), stateType: state,
			start: start.Add(time.Minute)}
		subTask := &taskRun{id: uuid.NewString(), flowRunID: top.id, name: "subflow", stateName: "Completed",
			stateType: "COMPLETED", child: sub.id, start: sub.start}
		sub.parentTaskRunID, sub.parentRunID = subTask.id, top.id
		w.addTask(subTask)
		w.addRun(sub)
		subflows = append(subflows, sub.id)
		for j := 0; j < tasksPerRun; j++ {
			name, typ := "Completed", "COMPLETED"
			if i%7 == 6 && j == 0 {
				name = "DBT_TEST_FAILED"
			}
			w.addTask(&taskRun{id: uuid.NewString(), flowRunID: sub.id, name: fmt.Sprintf("dbt-%d", j),
				stateName: name, stateType: typ, start: sub.start.Add(time.Duration(j) * time.Second)})
		}
	}
	w.order = append(append([]string(nil), w.Runs...), subflows...)
	for _, r := range w.runs {
		r.body = w.encodeRun(r)
	}
	for _, id := range w.taskOrder {
		t := w.tasks[id]
		t.body = encodeTask(t)
		for i := range LogsPerTask {
			ts := t.start.Add(time.Duration(i) * time.Millisecond)
			w.logs = append(w.logs, &logLine{flowRunID: t.flowRunID, taskRunID: t.id, ts: ts, body: mustMarshal(map[string]any{
				"id": uuid.NewString(), "created": ts.Format(time.RFC3339Nano), "updated": ts.Format(time.RFC3339Nano),
				"name": "prefect.task_runs", "level": 20, "message": fmt.Sprintf("%s line %02d", t.name, i),
				"timestamp": ts.Format(time.RFC3339Nano), "flow_run_id": t.flowRunID, "task_run_id": t.id,
			})})
		}
	}
	sort.SliceStable(w.logs, func(i, j int) bool { return w.logs[i].ts.Before(w.logs[j].ts) })
	return w
}

func (w *World) addRun(r *flowRun) { w.runs[r.id] = r }

func (w *World) addTask(t *taskRun) {
	w.tasks[t.id] = t
	w.taskOrder = append(w.taskOrder, t.id)
	w.tasksOf[t.flowRunID] = append(w.tasksOf[t.flowRunID], t)
}

// Calls is the number of Prefect calls the Python proxy's history route made
// for this world: 1 filter, then per run one v1 graph per flow run in its tree
// and one task-run filter.
func (w *World) Calls() int { return 1 + len(w.Runs)*(2+1) }

func (w *World) encodeRun(r *flowRun) []byte {
	var m map[string]any
	mustUnmarshal(flowRunTemplate, &m)
	m["id"], m["name"], m["flow_id"] = r.id, r.name, w.FlowID
	if r.parentTaskRunID == "" {
		m["deployment_id"] = w.DeploymentID
		m["labels"] = map[string]any{"prefect.flow.id": w.FlowID, "prefect.deployment.id": w.DeploymentID}
	} else {
		m["parent_task_run_id"] = r.parentTaskRunID
	}
	name := stateName(r.stateType)
	m["state_type"], m["state_name"] = r.stateType, name
	m["start_time"] = r.start.Format(time.RFC3339Nano)
	m["expected_start_time"] = r.start.Format(time.RFC3339Nano)
	m["end_time"] = r.start.Add(time.Minute).Format(time.RFC3339Nano)
	st := m["state"].(map[string]any)
	st["type"], st["name"] = r.stateType, name
	st["state_details"].(map[string]any)["flow_run_id"] = r.id
	return mustMarshal(m)
}

func encodeTask(t *taskRun) []byte {
	var m map[string]any
	mustUnmarshal(taskRunTemplate, &m)
	m["id"], m["name"], m["flow_run_id"] = t.id, t.name, t.flowRunID
	m["state_type"], m["state_name"] = t.stateType, t.stateName
	m["start_time"] = t.start.Format(time.RFC3339Nano)
	st := m["state"].(map[string]any)
	st["type"], st["name"] = t.stateType, t.stateName
	sd := st["state_details"].(map[string]any)
	sd["flow_run_id"], sd["task_run_id"] = t.flowRunID, t.id
	if t.child != "" {
		sd["child_flow_run_id"] = t.child
	}
	return mustMarshal(m)
}

// graphNode is one node of Prefect's v1 graph (GET /flow_runs/{id}/graph).
func graphNode(t *taskRun) map[string]any {
	var m map[string]any
	mustUnmarshal(string(t.body), &m)
	return map[string]any{
		"id": t.id, "name": t.name, "upstream_dependencies": []any{}, "state": m["state"],
		"expected_start_time": m["expected_start_time"], "start_time": m["start_time"],
		"end_time": m["end_time"], "total_run_time": m["total_run_time"],
		"estimated_run_time": m["estimated_run_time"], "untrackable_result": false,
	}
}

func stateName(typ string) string {
	if typ == "" {
		return ""
	}
	return typ[:1] + toLower(typ[1:])
}

func toLower(s string) string { return strings.ToLower(s) }

func mustUnmarshal(s string, v any) {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		panic(err)
	}
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Fake is a Prefect REST API over a World: the read endpoints the proxy's
// flow-run routes use. Latency is added to every call (Prefect on SQLite
// answers small reads in a few milliseconds); zero makes it a FAST upstream,
// the baseline against which the proxy's own overhead is measured.
type Fake struct {
	World   *World
	Latency time.Duration

	calls atomic.Int64
	mu    sync.Mutex
	paths map[string]int // method + route pattern → calls
	mux   *http.ServeMux
	// Precomputed answers that do not depend on the request body.
	graphV1 map[string][]byte
	graphV2 map[string][]byte
}

// NewFake serves w.
func NewFake(w *World, latency time.Duration) *Fake {
	f := &Fake{World: w, Latency: latency, paths: map[string]int{}, mux: http.NewServeMux(),
		graphV1: map[string][]byte{}, graphV2: map[string][]byte{}}
	for id := range w.runs {
		nodes := []any{}
		for _, t := range w.tasksOf[id] {
			nodes = append(nodes, graphNode(t))
		}
		f.graphV1[id] = mustMarshal(nodes)
		f.graphV2[id] = w.encodeGraphV2(id)
	}
	f.route("GET /api/flow_runs/{id}", f.flowRun)
	f.route("GET /api/flow_runs/{id}/graph", f.bytesOf(f.graphV1))
	f.route("GET /api/flow_runs/{id}/graph-v2", f.bytesOf(f.graphV2))
	f.route("POST /api/flow_runs/filter", f.flowRunFilter)
	f.route("POST /api/flow_runs/count", f.flowRunCount)
	f.route("GET /api/task_runs/{id}", f.taskRun)
	f.route("POST /api/task_runs/filter", f.taskRunFilter)
	f.route("POST /api/logs/filter", f.logFilter)
	f.route("GET /api/admin/version", func(w http.ResponseWriter, _ *http.Request) { writeRaw(w, 200, []byte(`"3.6.29"`)) })
	f.route("/", func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusNotFound, []byte(`{"detail":"Not Found"}`))
	})
	return f
}

// encodeGraphV2 mirrors Prefect's graph-v2: the run's direct task runs, with a
// subflow shown as its flow-run node in place of the task that launched it.
func (w *World) encodeGraphV2(id string) []byte {
	r := w.runs[id]
	nodes := []any{}
	roots := []string{}
	for _, t := range w.tasksOf[id] {
		kind, nid, label, typ := "task-run", t.id, t.name, t.stateType
		if t.child != "" {
			c := w.runs[t.child]
			kind, nid, label, typ = "flow-run", c.id, "flow / "+c.name, c.stateType
		}
		roots = append(roots, nid)
		nodes = append(nodes, []any{nid, map[string]any{
			"kind": kind, "id": nid, "label": label, "state_type": typ,
			"start_time": t.start.Format(time.RFC3339Nano), "end_time": t.start.Add(time.Second).Format(time.RFC3339Nano),
			"parents": []any{}, "children": []any{}, "encapsulating": []any{}, "artifacts": []any{},
		}})
	}
	return mustMarshal(map[string]any{
		"start_time": r.start.Format(time.RFC3339Nano), "end_time": r.start.Add(time.Minute).Format(time.RFC3339Nano),
		"root_node_ids": roots, "nodes": nodes, "artifacts": []any{}, "states": []any{},
	})
}

func (f *Fake) route(pattern string, h http.HandlerFunc) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.mu.Lock()
		f.paths[pattern]++
		f.mu.Unlock()
		if f.Latency > 0 {
			time.Sleep(f.Latency)
		}
		h(w, r)
	})
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// Calls is the number of requests served so far.
func (f *Fake) Calls() int64 { return f.calls.Load() }

// CallsByRoute is the number of requests per route pattern so far.
func (f *Fake) CallsByRoute() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.paths))
	for k, v := range f.paths {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the counters.
func (f *Fake) ResetCalls() {
	f.calls.Store(0)
	f.mu.Lock()
	f.paths = map[string]int{}
	f.mu.Unlock()
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func notFound(w http.ResponseWriter, what string) {
	writeRaw(w, http.StatusNotFound, []byte(`{"detail":"`+what+` not found"}`))
}

func (f *Fake) flowRun(w http.ResponseWriter, r *http.Request) {
	run, ok := f.World.runs[r.PathValue("id")]
	if !ok {
		notFound(w, "Flow run")
		return
	}
	writeRaw(w, http.StatusOK, run.body)
}

func (f *Fake) taskRun(w http.ResponseWriter, r *http.Request) {
	t, ok := f.World.tasks[r.PathValue("id")]
	if !ok {
		notFound(w, "Task run")
		return
	}
	writeRaw(w, http.StatusOK, t.body)
}

func (f *Fake) bytesOf(m map[string][]byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, ok := m[r.PathValue("id")]
		if !ok {
			notFound(w, "Flow run")
			return
		}
		writeRaw(w, http.StatusOK, b)
	}
}

// anyOf is Prefect's {"any_": [...]} filter operand; nil means "no filter".
type anyOf struct {
	Any    *[]string `json:"any_"`
	NotAny *[]string `json:"not_any_"`
}

func (a *anyOf) match(v string) bool {
	if a == nil {
		return true
	}
	if a.Any != nil && !contains(*a.Any, v) {
		return false
	}
	if a.NotAny != nil && contains(*a.NotAny, v) {
		return false
	}
	return true
}

func contains(xs []string, v string) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

type stateFilter struct {
	Type *anyOf `json:"type"`
	Name *anyOf `json:"name"`
}

type timeFilter struct {
	After  *time.Time `json:"after_"`
	Before *time.Time `json:"before_"`
}

func (t *timeFilter) match(v time.Time) bool {
	return t == nil || (t.After == nil || !v.Before(*t.After)) && (t.Before == nil || !v.After(*t.Before))
}

type flowRunFilter struct {
	Operator        string       `json:"operator"`
	ID              *anyOf       `json:"id"`
	DeploymentID    *anyOf       `json:"deployment_id"`
	ParentTaskRunID *anyOf       `json:"parent_task_run_id"`
	ParentFlowRunID *anyOf       `json:"parent_flow_run_id"`
	State           *stateFilter `json:"state"`
	StartTime       *timeFilter  `json:"start_time"`
}

// filterBody is the subset of Prefect's filter bodies the fake understands.
// Unknown keys are ignored, as Prefect would not: keep the benchmarks to the
// filters listed here.
type filterBody struct {
	Deployments struct {
		ID *anyOf `json:"id"`
	} `json:"deployments"`
	FlowRuns flowRunFilter `json:"flow_runs"`
	Logs     struct {
		Operator  string `json:"operator"`
		FlowRunID *anyOf `json:"flow_run_id"`
		TaskRunID *struct {
			anyOf
			IsNull *bool `json:"is_null_"`
		} `json:"task_run_id"`
	} `json:"logs"`
	TaskRuns struct {
		Operator    string       `json:"operator"`
		ID          *anyOf       `json:"id"`
		FlowRunID   *anyOf       `json:"flow_run_id"`
		State       *stateFilter `json:"state"`
		SubflowRuns *struct {
			Exists bool `json:"exists_"`
		} `json:"subflow_runs"`
	} `json:"task_runs"`
	Sort   string `json:"sort"`
	Limit  *int   `json:"limit"`
	Offset int    `json:"offset"`
}

// cond is one set sub-filter's verdict; unset sub-filters are left out, as
// Prefect leaves them out of its and_/or_ clause.
type cond struct {
	set, ok bool
}

// combine applies Prefect's operator ("and_" by default) to the set conditions.
func combine(op string, cs ...cond) bool {
	anyOK, all, n := false, true, 0
	for _, c := range cs {
		if !c.set {
			continue
		}
		n++
		anyOK = anyOK || c.ok
		all = all && c.ok
	}
	if n == 0 {
		return true
	}
	if op == "or_" {
		return anyOK
	}
	return all
}

func (s *stateFilter) cond(typ, name string) cond {
	if s == nil {
		return cond{}
	}
	return cond{true, s.Type.match(typ) && s.Name.match(name)}
}

func (a *anyOf) cond(v string) cond {
	if a == nil {
		return cond{}
	}
	return cond{true, v != "" && a.match(v)}
}

func decodeFilter(w http.ResponseWriter, r *http.Request) (filterBody, bool) {
	var fb filterBody
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&fb); err != nil {
			writeRaw(w, http.StatusUnprocessableEntity, []byte(`{"exception_message":"Invalid request received."}`))
			return fb, false
		}
	}
	if fb.Limit != nil && (*fb.Limit > 200 || *fb.Limit < 0) || fb.Offset < 0 {
		writeRaw(w, http.StatusUnprocessableEntity, []byte(`{"exception_message":"Invalid request received."}`))
		return fb, false
	}
	return fb, true
}

// match applies a flow-run filter to run (dep: its deployment, "" for a subflow).
func (fr *flowRunFilter) match(run *flowRun, dep string) bool {
	var start cond
	if fr.StartTime != nil {
		start = cond{true, fr.StartTime.match(run.start)}
	}
	return combine(fr.Operator, fr.DeploymentID.cond(dep), fr.ID.cond(run.id),
		fr.ParentTaskRunID.cond(run.parentTaskRunID), fr.ParentFlowRunID.cond(run.parentRunID),
		fr.State.cond(run.stateType, stateName(run.stateType)), start)
}

func (f *Fake) matchRuns(fb filterBody) []*flowRun {
	var out []*flowRun
	for _, id := range f.World.order {
		run := f.World.runs[id]
		dep := ""
		if run.parentTaskRunID == "" {
			dep = f.World.DeploymentID
		}
		if fb.Deployments.ID != nil && !fb.Deployments.ID.cond(dep).ok {
			continue
		}
		if !fb.FlowRuns.match(run, dep) {
			continue
		}
		out = append(out, run)
	}
	if fb.Sort == "START_TIME_DESC" || fb.Sort == "EXPECTED_START_TIME_DESC" {
		sort.SliceStable(out, func(i, j int) bool { return out[i].start.After(out[j].start) })
	}
	return out
}

func page[T any](xs []T, fb filterBody) []T {
	limit := 200
	if fb.Limit != nil && *fb.Limit > 0 {
		limit = *fb.Limit
	}
	if fb.Offset >= len(xs) {
		return nil
	}
	xs = xs[fb.Offset:]
	if len(xs) > limit {
		xs = xs[:limit]
	}
	return xs
}

func (f *Fake) flowRunFilter(w http.ResponseWriter, r *http.Request) {
	fb, ok := decodeFilter(w, r)
	if !ok {
		return
	}
	runs := page(f.matchRuns(fb), fb)
	bodies := make([][]byte, len(runs))
	for i, run := range runs {
		bodies[i] = run.body
	}
	writeRaw(w, http.StatusOK, jsonList(bodies))
}

func (f *Fake) flowRunCount(w http.ResponseWriter, r *http.Request) {
	fb, ok := decodeFilter(w, r)
	if !ok {
		return
	}
	writeRaw(w, http.StatusOK, []byte(fmt.Sprint(len(f.matchRuns(fb)))))
}

func (f *Fake) taskRunFilter(w http.ResponseWriter, r *http.Request) {
	fb, ok := decodeFilter(w, r)
	if !ok {
		return
	}
	var match []*taskRun
	for _, id := range f.World.taskOrder {
		t := f.World.tasks[id]
		tr := fb.TaskRuns
		run := f.World.runs[t.flowRunID]
		dep := ""
		if run.parentTaskRunID == "" {
			dep = f.World.DeploymentID
		}
		if !fb.FlowRuns.match(run, dep) {
			continue
		}
		var subflow cond
		if tr.SubflowRuns != nil {
			subflow = cond{true, (t.child != "") == tr.SubflowRuns.Exists}
		}
		if !combine(tr.Operator, tr.ID.cond(t.id), tr.FlowRunID.cond(t.flowRunID),
			tr.State.cond(t.stateType, t.stateName), subflow) {
			continue
		}
		match = append(match, t)
	}
	match = page(match, fb)
	bodies := make([][]byte, len(match))
	for i, t := range match {
		bodies[i] = t.body
	}
	writeRaw(w, http.StatusOK, jsonList(bodies))
}

func jsonList(items [][]byte) []byte {
	n := 2
	for _, b := range items {
		n += len(b) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, b := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	return append(out, ']')
}

func (f *Fake) logFilter(w http.ResponseWriter, r *http.Request) {
	fb, ok := decodeFilter(w, r)
	if !ok {
		return
	}
	lf := fb.Logs
	var match [][]byte
	for _, l := range f.World.logs { // oldest first
		var task cond
		if lf.TaskRunID != nil {
			task = cond{true, (lf.TaskRunID.Any == nil || l.taskRunID != "" && lf.TaskRunID.match(l.taskRunID)) &&
				(lf.TaskRunID.IsNull == nil || *lf.TaskRunID.IsNull == (l.taskRunID == ""))}
		}
		if combine(lf.Operator, lf.FlowRunID.cond(l.flowRunID), task) {
			match = append(match, l.body)
		}
	}
	writeRaw(w, http.StatusOK, jsonList(page(match, fb)))
}
