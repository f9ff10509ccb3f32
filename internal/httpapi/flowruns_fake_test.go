package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// A small in-memory Prefect for the flow-run routes: flow runs, task runs
// (subflow parents carry state.state_details.child_flow_run_id, as Prefect's
// UpdateSubflowParentTask sets it), logs and graph-v2, behind the filter
// semantics checked against Prefect 3.6.29 (limit ≤ 200, offset, any_).

type fakeRun struct {
	ID, Name, Deployment, StateType, StateName string
	Start                                      string
	End                                        string // end_time, when set
	Params                                     map[string]any
	Parent                                     string // parent task run id, for a subflow
}

type fakeTask struct {
	ID, FlowRun, Name, StateType, StateName string
	Child                                   string // child flow run id when a subflow parent
	Upstream                                []string
}

type fakeLog struct {
	ID, FlowRun, TaskRun, Msg string
	Level                     int
	TS                        time.Time
}

type prefectWorld struct {
	mu    sync.Mutex
	runs  []*fakeRun
	tasks []*fakeTask
	logs  []*fakeLog
	n     int
}

func (w *prefectWorld) id() string {
	w.n++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", w.n)
}

func (w *prefectWorld) run(dep, name, stype, sname string) *fakeRun {
	r := &fakeRun{ID: w.id(), Name: name, Deployment: dep, StateType: stype, StateName: sname,
		Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(w.n) * time.Minute).Format(time.RFC3339)}
	w.runs = append(w.runs, r)
	return r
}

func (w *prefectWorld) task(fr *fakeRun, name, stype, sname string, upstream ...*fakeTask) *fakeTask {
	t := &fakeTask{ID: w.id(), FlowRun: fr.ID, Name: name, StateType: stype, StateName: sname}
	for _, u := range upstream {
		t.Upstream = append(t.Upstream, u.ID)
	}
	w.tasks = append(w.tasks, t)
	return t
}

// subflow adds a child flow run of parent, tracked by a parent task run.
func (w *prefectWorld) subflow(parent *fakeRun, name, stype, sname string) (*fakeTask, *fakeRun) {
	t := w.task(parent, name, stype, sname)
	c := &fakeRun{ID: w.id(), Name: name + "-run", StateType: stype, StateName: sname, Parent: t.ID}
	t.Child = c.ID
	w.runs = append(w.runs, c)
	return t, c
}

func (w *prefectWorld) log(fr *fakeRun, tr *fakeTask, msg string) {
	l := &fakeLog{ID: w.id(), FlowRun: fr.ID, Msg: msg, Level: 20,
		TS: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(w.n) * time.Second)}
	if tr != nil {
		l.TaskRun = tr.ID
	}
	w.logs = append(w.logs, l)
}

func (w *prefectWorld) runByID(id string) *fakeRun {
	for _, r := range w.runs {
		if r.ID == id {
			return r
		}
	}
	return nil
}

func (r *fakeRun) json() map[string]any {
	var dep any
	if r.Deployment != "" {
		dep = r.Deployment
	}
	params := r.Params
	if params == nil {
		params = map[string]any{}
	}
	m := map[string]any{
		"id": r.ID, "name": r.Name, "deployment_id": dep, "tags": []string{"t"}, "parameters": params,
		"state_type": r.StateType, "state_name": r.StateName, "start_time": r.Start,
		"expected_start_time": r.Start, "total_run_time": 1.5, "estimated_run_time": 2.5,
		"work_queue_name": "ddp", "work_pool_name": "pool", "parent_task_run_id": nilIfEmpty(r.Parent),
		"state": map[string]any{"type": r.StateType, "name": r.StateName,
			"state_details": map[string]any{"child_flow_run_id": nil}},
	}
	if r.End != "" {
		m["end_time"] = r.End
	}
	return m
}

func (t *fakeTask) json() map[string]any {
	return map[string]any{
		"id": t.ID, "name": t.Name, "flow_run_id": t.FlowRun, "state_type": t.StateType,
		"state_name": t.StateName, "total_run_time": 0.5, "estimated_run_time": 0.25,
		"state": map[string]any{"type": t.StateType, "name": t.StateName,
			"state_details": map[string]any{"child_flow_run_id": nilIfEmpty(t.Child)}},
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// anyOf reads filter[key].any_ (nil when absent).
func anyOf(m map[string]any, key string) []string {
	sub, _ := m[key].(map[string]any)
	if sub == nil {
		return nil
	}
	list, ok := sub["any_"].([]any)
	if !ok {
		return nil
	}
	out := []string{}
	for _, v := range list {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

func obj(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	if o == nil {
		return map[string]any{}
	}
	return o
}

// page applies Prefect's limit/offset rules.
func page[T any](w http.ResponseWriter, body map[string]any, rows []T) {
	limit := prefect.PageSize
	if v, ok := body["limit"].(float64); ok {
		limit = int(v)
	}
	if limit > prefect.PageSize {
		prefecttest.Write(w, 422, map[string]any{"detail": "Invalid limit: must be less than or equal to 200."})
		return
	}
	off := 0
	if v, ok := body["offset"].(float64); ok {
		off = int(v)
	}
	out := []T{}
	for i := off; i < len(rows) && len(out) < limit; i++ {
		out = append(out, rows[i])
	}
	prefecttest.Write(w, 200, out)
}

func readBody(r *http.Request) map[string]any {
	var m map[string]any
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &m)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

// install registers the fake's endpoints on f.
func (w *prefectWorld) install(f *prefecttest.Server) {
	f.Handle("GET /flow_runs/{id}", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if run := w.runByID(r.PathValue("id")); run != nil {
			prefecttest.Write(rw, 200, run.json())
			return
		}
		prefecttest.Write(rw, 404, map[string]any{"detail": "Flow run not found"})
	})
	f.Handle("POST /flow_runs/filter", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		defer w.mu.Unlock()
		body := readBody(r)
		fr := obj(body, "flow_runs")
		deps := anyOf(obj(body, "deployments"), "id")
		var rows []map[string]any
		for _, run := range w.runs {
			if !w.runMatches(fr, run) || (deps != nil && !slices.Contains(deps, run.Deployment)) {
				continue
			}
			rows = append(rows, run.json())
		}
		page(rw, body, rows)
	})
	f.Handle("POST /task_runs/filter", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		defer w.mu.Unlock()
		body := readBody(r)
		fr := obj(body, "flow_runs")
		tf := obj(body, "task_runs")
		ids := anyOf(tf, "id")
		names := anyOf(obj(tf, "state"), "name")
		_, wantSubflow := tf["subflow_runs"]
		var rows []map[string]any
		for _, t := range w.tasks {
			if !w.runMatches(fr, w.runByID(t.FlowRun)) || (ids != nil && !slices.Contains(ids, t.ID)) {
				continue
			}
			if tf["operator"] == "or_" && !((wantSubflow && t.Child != "") || slices.Contains(names, t.StateName)) {
				continue
			}
			rows = append(rows, t.json())
		}
		page(rw, body, rows)
	})
	f.Handle("GET /flow_runs/{id}/graph-v2", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		defer w.mu.Unlock()
		id := r.PathValue("id")
		if w.runByID(id) == nil {
			prefecttest.Write(rw, 404, map[string]any{"exception_message": "Flow run " + id + " not found"})
			return
		}
		roots := []string{}
		nodes := [][]any{}
		for _, t := range w.tasks {
			if t.FlowRun != id {
				continue
			}
			nodeID, kind, label := t.ID, "task-run", t.Name
			if t.Child != "" {
				nodeID, kind, label = t.Child, "flow-run", "some-flow / "+w.runByID(t.Child).Name
			}
			children := []map[string]string{}
			for _, d := range w.tasks {
				if slices.Contains(d.Upstream, t.ID) {
					children = append(children, map[string]string{"id": d.ID})
				}
			}
			if len(t.Upstream) == 0 {
				roots = append(roots, nodeID)
			}
			nodes = append(nodes, []any{nodeID, map[string]any{
				"kind": kind, "id": nodeID, "label": label, "state_type": t.StateType,
				"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:01:00Z",
				"parents": []any{}, "children": children, "encapsulating": []any{}, "artifacts": []any{},
			}})
		}
		prefecttest.Write(rw, 200, map[string]any{"start_time": nil, "end_time": nil,
			"root_node_ids": roots, "nodes": nodes, "artifacts": []any{}, "states": []any{}})
	})
	f.Handle("POST /logs/filter", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		defer w.mu.Unlock()
		body := readBody(r)
		lf := obj(body, "logs")
		runIDs, taskIDs := anyOf(lf, "flow_run_id"), anyOf(lf, "task_run_id")
		var rows []map[string]any
		logs := append([]*fakeLog(nil), w.logs...)
		sort.SliceStable(logs, func(i, j int) bool { return logs[i].TS.Before(logs[j].TS) })
		for _, l := range logs {
			inRun := runIDs != nil && slices.Contains(runIDs, l.FlowRun)
			inTask := taskIDs != nil && slices.Contains(taskIDs, l.TaskRun)
			keep := (runIDs == nil || inRun) && (taskIDs == nil || inTask)
			if isNull, ok := obj(lf, "task_run_id")["is_null_"].(bool); ok && isNull != (l.TaskRun == "") {
				keep = false
			}
			if lf["operator"] == "or_" {
				keep = inRun || inTask
			}
			if keep {
				rows = append(rows, map[string]any{"id": l.ID, "flow_run_id": l.FlowRun, "task_run_id": nilIfEmpty(l.TaskRun),
					"level": l.Level, "message": l.Msg, "timestamp": l.TS.Format(time.RFC3339Nano), "name": "x"})
			}
		}
		page(rw, body, rows)
	})
}

// parentRun is the flow run holding run's parent task run ("" for a top-level run).
func (w *prefectWorld) parentRun(run *fakeRun) string {
	for _, t := range w.tasks {
		if run.Parent != "" && t.ID == run.Parent {
			return t.FlowRun
		}
	}
	return ""
}

// runMatches applies a FlowRunFilter (id, name, state.type and
// parent_flow_run_id any_, under its and_/or_ operator) to run.
func (w *prefectWorld) runMatches(fr map[string]any, run *fakeRun) bool {
	var conds []bool
	for key, value := range map[string]func() string{
		"id": func() string { return run.ID }, "name": func() string { return run.Name },
		"parent_flow_run_id": func() string { return w.parentRun(run) },
	} {
		if list := anyOf(fr, key); list != nil {
			conds = append(conds, slices.Contains(list, value()))
		}
	}
	if types := anyOf(obj(fr, "state"), "type"); types != nil {
		conds = append(conds, slices.Contains(types, run.StateType))
	}
	if fr["operator"] == "or_" && len(conds) > 0 {
		return slices.Contains(conds, true)
	}
	return !slices.Contains(conds, false)
}

// flowRunsAPI is the api's real handler over the fake world.
func flowRunsAPI(t *testing.T, w *prefectWorld) (*prefecttest.Server, http.Handler) {
	t.Helper()
	fake, h := readsAPI(t, "")
	if w != nil {
		w.install(fake)
	}
	return fake, h
}

// apiWithClient builds the api over an arbitrary Prefect client (timeouts).
func apiWithClient(t *testing.T, pc *prefect.Client) http.Handler {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return specChecked(t, New(Deps{Log: log, Proxy: proxy.New(pc, log)}))
}

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	return v
}
