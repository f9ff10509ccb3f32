package proxy

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// DBTTestFailed is the state name the dbt runner flow gives a run whose
// `dbt test` failed (a COMPLETED-type state); Django shows it as a warning.
const DBTTestFailed = "DBT_TEST_FAILED"

// terminalTypes are the state types the run history (route 19) lists.
var terminalTypes = []string{"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

// runHead is the part of a Prefect flow run the proxy reads; the other
// fields pass through as raw JSON.
type runHead struct {
	ID                json.RawMessage `json:"id"`
	Name              json.RawMessage `json:"name"`
	Tags              json.RawMessage `json:"tags"`
	StartTime         json.RawMessage `json:"start_time"`
	ExpectedStartTime json.RawMessage `json:"expected_start_time"`
	TotalRunTime      json.RawMessage `json:"total_run_time"`
	EstimatedRunTime  json.RawMessage `json:"estimated_run_time"`
	WorkQueueName     json.RawMessage `json:"work_queue_name"`
	WorkPoolName      json.RawMessage `json:"work_pool_name"`
	DeploymentID      json.RawMessage `json:"deployment_id"`
	State             *struct {
		Type json.RawMessage `json:"type"`
		Name json.RawMessage `json:"name"`
	} `json:"state"`
}

func (r runHead) idString() string {
	var s string
	_ = json.Unmarshal(r.ID, &s)
	return s
}

// stateType and stateName are Prefect's values (null when the run has no state).
func (r runHead) stateType() json.RawMessage {
	if r.State == nil || r.State.Type == nil {
		return json.RawMessage("null")
	}
	return r.State.Type
}

func (r runHead) stateName() json.RawMessage {
	if r.State == nil || r.State.Name == nil {
		return json.RawMessage("null")
	}
	return r.State.Name
}

// FlowRunPoll is route 22 (GET /proxy/flow_runs/{id}/poll): Prefect's flow run
// JSON, byte for byte. It is Django's most frequent call (UI polling, the
// webhook task, clear_stuck_locks), so it is one GET shared by concurrent
// identical polls.
func (s *Service) FlowRunPoll(ctx context.Context, id string) (json.RawMessage, error) {
	msg := "failed to fetch flow_run " + id
	cid, ok := canonicalID(id)
	if !ok {
		return nil, badID(msg)
	}
	raw, err := sharedRead(ctx, s, "poll:"+cid, func(ctx context.Context) (json.RawMessage, error) {
		return s.getFlowRun(ctx, cid)
	})
	return raw, translate(err, failed(msg))
}

func (s *Service) getFlowRun(ctx context.Context, id string) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := s.prefect.Get(ctx, "/flow_runs/"+id, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// FlowRun is route 21 (GET /proxy/flow_runs/{id}): Prefect's flow run plus
// "status" (state.type) and "state_name" (DBT_TEST_FAILED when any task run in
// the run's subflow tree has that state name, else state.name).
// Calls: the GET and the first task-run filter together (one round trip for
// a run with one level of subflows), then one filter per two further levels.
func (s *Service) FlowRun(ctx context.Context, id string) (json.RawMessage, error) {
	msg := "failed to fetch flow_run " + id
	cid, ok := canonicalID(id)
	if !ok {
		return nil, badID(msg)
	}
	raw, err := sharedRead(ctx, s, "flowrun:"+cid, func(ctx context.Context) (json.RawMessage, error) {
		// The task-run scan needs only the id, so it runs alongside the GET.
		var raw json.RawMessage
		var failed map[string]bool
		err := withSpeculation(ctx,
			func(ctx context.Context) (err error) { raw, err = s.getFlowRun(ctx, cid); return err },
			func(ctx context.Context) (err error) { failed, err = s.dbtTestFailed(ctx, []string{cid}); return err })
		if err != nil {
			return nil, err
		}
		var head runHead
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, err
		}
		name := head.stateName()
		if failed[cid] {
			name = json.RawMessage(strconv.Quote(DBTTestFailed))
		}
		return setKeys(raw, "status", head.stateType(), "state_name", name)
	})
	return raw, translate(err, failed(msg))
}

// FlowRunSummary is one row of route 19, in the Python proxy's mixed casing.
type FlowRunSummary struct {
	ID                json.RawMessage `json:"id"`
	Name              json.RawMessage `json:"name"`
	Tags              json.RawMessage `json:"tags"`
	StartTime         json.RawMessage `json:"startTime"`
	ExpectedStartTime json.RawMessage `json:"expectedStartTime"`
	TotalRunTime      json.RawMessage `json:"totalRunTime"`
	Status            json.RawMessage `json:"status"`
	StateName         json.RawMessage `json:"state_name"`
}

// FlowRunsByDeployment is route 19 (GET /proxy/flow_runs): the deployment's
// runs in a terminal state, newest start first, each with its final state
// name. limit 0 means every run (Prefect's 200-row cap is paged through);
// startTimeGT, when set, is passed to Prefect as start_time.after_.
//
// Calls: the run filter (paged), then one batched task-run filter per level of
// subflow depth across all runs (see dbtTestFailed) — not N×(2+subflows).
func (s *Service) FlowRunsByDeployment(ctx context.Context, deploymentID string, limit int, startTimeGT string) ([]FlowRunSummary, error) {
	const msg = "failed to fetch flow_runs for deployment"
	dep, ok := canonicalID(deploymentID)
	if !ok {
		return nil, badID(msg)
	}
	key := "flowruns:" + dep + "|" + strconv.Itoa(limit) + "|" + startTimeGT
	out, err := sharedRead(ctx, s, key, func(ctx context.Context) ([]FlowRunSummary, error) {
		snap := s.Cache.Begin(ctx) // before the listing: see finalStates
		runFilter := map[string]any{
			"operator": "and_",
			"state":    map[string]any{"type": map[string]any{"any_": terminalTypes}},
		}
		if startTimeGT != "" {
			runFilter["start_time"] = map[string]any{"after_": startTimeGT}
		}
		rows, err := s.prefect.FilterAll(ctx, "/flow_runs/filter", map[string]any{
			"sort":        "START_TIME_DESC",
			"deployments": map[string]any{"id": map[string]any{"any_": []string{dep}}},
			"flow_runs":   runFilter,
		}, limit)
		if err != nil {
			return nil, err
		}
		rows = uniqueByID(rows)
		heads := make([]runHead, len(rows))
		ids := make([]string, len(rows))
		for i, r := range rows {
			if err := json.Unmarshal(r, &heads[i]); err != nil {
				return nil, err
			}
			ids[i] = heads[i].idString()
		}
		failed, err := s.finalStates(ctx, snap, rows, ids)
		if err != nil {
			return nil, err
		}
		out := make([]FlowRunSummary, len(heads))
		for i, h := range heads {
			name := h.stateName()
			if failed[ids[i]] {
				name = json.RawMessage(strconv.Quote(DBTTestFailed))
			}
			out[i] = FlowRunSummary{
				ID: h.ID, Name: h.Name, Tags: h.Tags, StartTime: h.StartTime,
				ExpectedStartTime: h.ExpectedStartTime, TotalRunTime: h.TotalRunTime,
				Status: h.stateType(), StateName: name,
			}
		}
		return out, nil
	})
	return out, translate(err, failed(msg))
}

// LateFilter is the body of route 20 (FilterLateFlowRuns).
type LateFilter struct {
	DeploymentID      string
	WorkPoolName      string
	WorkQueueName     string
	Limit             int // <= 0: every late run
	BeforeStartTime   *time.Time
	AfterStartTime    *time.Time
	ExcludeFlowRunIDs []string
}

// LateFlowRun is one row of route 20.
type LateFlowRun struct {
	ID                json.RawMessage `json:"id"`
	Name              json.RawMessage `json:"name"`
	Tags              json.RawMessage `json:"tags"`
	StartTime         json.RawMessage `json:"startTime"`
	ExpectedStartTime json.RawMessage `json:"expectedStartTime"`
	TotalRunTime      json.RawMessage `json:"totalRunTime"`
	EstimatedRunTime  json.RawMessage `json:"estimatedRunTime"`
	WorkQueueName     json.RawMessage `json:"workQueueName"`
	WorkPoolName      json.RawMessage `json:"workPoolName"`
	DeploymentID      json.RawMessage `json:"deployment_id"`
}

// LateFlowRuns is route 20 (POST /proxy/flow_runs/late): runs in the "Late"
// state, newest start first.
func (s *Service) LateFlowRuns(ctx context.Context, f LateFilter) ([]LateFlowRun, error) {
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	const msg = "failed to fetch late flow runs"
	exclude := f.ExcludeFlowRunIDs
	if exclude == nil {
		exclude = []string{}
	}
	runFilter := map[string]any{
		"operator": "and_",
		"state":    map[string]any{"name": map[string]any{"any_": []string{"Late"}}},
		"id":       map[string]any{"not_any_": exclude},
	}
	est := map[string]any{}
	if f.BeforeStartTime != nil {
		est["before_"] = f.BeforeStartTime.UTC().Format(time.RFC3339Nano)
	}
	if f.AfterStartTime != nil {
		est["after_"] = f.AfterStartTime.UTC().Format(time.RFC3339Nano)
	}
	if len(est) > 0 {
		runFilter["expected_start_time"] = est
	}
	body := map[string]any{"sort": "START_TIME_DESC", "flow_runs": runFilter}
	if f.DeploymentID != "" {
		body["deployments"] = map[string]any{"id": map[string]any{"any_": []string{f.DeploymentID}}}
	}
	if f.WorkPoolName != "" {
		body["work_pools"] = map[string]any{"name": map[string]any{"any_": []string{f.WorkPoolName}}}
	}
	if f.WorkQueueName != "" {
		body["work_pool_queues"] = map[string]any{"name": map[string]any{"any_": []string{f.WorkQueueName}}}
	}
	rows, err := s.prefect.FilterAll(ctx, "/flow_runs/filter", body, max(f.Limit, 0))
	if err != nil {
		return nil, translate(err, failed(msg))
	}
	rows = uniqueByID(rows)
	out := make([]LateFlowRun, len(rows))
	for i, r := range rows {
		var h runHead
		if err := json.Unmarshal(r, &h); err != nil {
			return nil, translate(err, failed(msg))
		}
		out[i] = LateFlowRun{
			ID: h.ID, Name: h.Name, Tags: h.Tags, StartTime: h.StartTime,
			ExpectedStartTime: h.ExpectedStartTime, TotalRunTime: h.TotalRunTime,
			EstimatedRunTime: h.EstimatedRunTime, WorkQueueName: h.WorkQueueName,
			WorkPoolName: h.WorkPoolName, DeploymentID: h.DeploymentID,
		}
	}
	return out, nil
}

// FlowRunByName is route 18 (POST /proxy/flow_run/): the first run with that
// name in Prefect's default order (ID_DESC), plus "status" (state.type).
func (s *Service) FlowRunByName(ctx context.Context, name string) (json.RawMessage, error) {
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	var rows []json.RawMessage
	err := s.prefect.PostRead(ctx, "/flow_runs/filter", map[string]any{
		"flow_runs": map[string]any{"operator": "and_", "name": map[string]any{"any_": []string{name}}},
		"limit":     1,
	}, &rows)
	if err != nil {
		return nil, translate(err, failed("failed to fetch flow_runs by name"))
	}
	if len(rows) == 0 {
		return nil, apperr.New(apperr.BadRequest, "no such flow run")
	}
	var h runHead
	if err := json.Unmarshal(rows[0], &h); err != nil {
		return nil, translate(err, failed("failed to fetch flow_runs by name"))
	}
	raw, err := setKeys(rows[0], "status", h.stateType())
	if err != nil {
		return nil, translate(err, failed("failed to fetch flow_runs by name"))
	}
	return raw, nil
}

// ScheduledFlowRuns is route 17 (GET /proxy/v1/deployments/get_scheduled_flow_runs):
// the deployment's SCHEDULED runs, soonest first, as raw Prefect JSON. It reads
// them with /flow_runs/filter and the same filter and sort as Prefect's
// runner-polling endpoint, which must not be called: it marks deployments READY.
func (s *Service) ScheduledFlowRuns(ctx context.Context, deploymentID string) ([]json.RawMessage, error) {
	const msg = "failed to fetch scheduled flow-runs for deployment"
	dep, ok := canonicalID(deploymentID)
	if !ok {
		return nil, badID(msg)
	}
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	rows, err := s.prefect.FilterAll(ctx, "/flow_runs/filter", map[string]any{
		"sort":        "NEXT_SCHEDULED_START_TIME_ASC",
		"deployments": map[string]any{"id": map[string]any{"any_": []string{dep}}},
		"flow_runs":   map[string]any{"state": map[string]any{"type": map[string]any{"any_": []string{"SCHEDULED"}}}},
	}, 0)
	if err != nil {
		return nil, translate(err, failed(msg))
	}
	return nonNil(uniqueByID(rows)), nil
}

// LongRunningFlowRuns is route 35 (GET /proxy/flow_runs/long-running/{nhours}):
// RUNNING runs that started before `since - nhours`, as raw Prefect JSON.
// The Python route had no error mapping: a Prefect rejection is a 400 whose
// detail is Prefect's text.
func (s *Service) LongRunningFlowRuns(ctx context.Context, nhours int, since time.Time) ([]json.RawMessage, error) {
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	before := since.Add(-time.Duration(nhours) * time.Hour).UTC()
	rows, err := s.prefect.FilterAll(ctx, "/flow_runs/filter", map[string]any{
		"flow_runs": map[string]any{
			"operator":   "and_",
			"state":      map[string]any{"operator": "and_", "type": map[string]any{"any_": []string{"RUNNING"}}},
			"start_time": map[string]any{"before_": before.Format(time.RFC3339Nano)},
		},
	}, 0)
	if err != nil {
		return nil, translate(err, prefectText("failed to fetch long-running flow runs"))
	}
	return nonNil(uniqueByID(rows)), nil
}

// nonNil makes an empty result encode as [] rather than null.
func nonNil(rows []json.RawMessage) []json.RawMessage {
	if rows == nil {
		return []json.RawMessage{}
	}
	return rows
}

// dbtTestFailed reports, for each root flow run, whether a task run anywhere
// in its subflow tree (the root, its subflows, their subflows...) has state
// name DBT_TEST_FAILED — the Python proxy's update_flow_run_final_state.
//
// Python walked each run's tree with one v1 /flow_runs/{id}/graph GET per
// flow run, then filtered its task runs (capped at 200). The v1 graph is just
// the run's task runs, a subflow showing as a task run whose
// state.state_details.child_flow_run_id names the child. So the same walk is
// done breadth-first for all roots at once, restricted to the task runs that
// matter — subflow parents (to find the next level) or DBT_TEST_FAILED ones —
// and each task-run filter (chunked, paged) covers TWO depth levels: the
// frontier's flow runs and their subflows, which Prefect's
// flow_runs.parent_flow_run_id names without knowing their ids. Prefect's
// server sets a subflow parent's child_flow_run_id from the child's
// parent_task_run_id (UpdateSubflowParentTask), so the children the walk
// finds are the runs that filter returns; rows of a subflow the walk does not
// reach through child_flow_run_id are ignored, as the walk never saw them. A
// run with one level of subflows (Dalgo's) is thus one call, not two.
// Checked against Prefect 3.6.29.
func (s *Service) dbtTestFailed(ctx context.Context, roots []string) (map[string]bool, error) {
	w := treeWalk{
		children:  map[string][]string{},
		hasFailed: map[string]bool{},
		seen:      make(map[string]bool, len(roots)),
	}
	var frontier []string
	for _, r := range roots {
		if r != "" && !w.seen[r] {
			w.seen[r] = true
			frontier = append(frontier, r)
		}
	}
	for len(frontier) > 0 {
		rows, err := s.filterByIDs(ctx, "/task_runs/filter", frontier, func(chunk []string) map[string]any {
			return map[string]any{
				"flow_runs": map[string]any{
					"operator":           "or_",
					"id":                 map[string]any{"any_": chunk},
					"parent_flow_run_id": map[string]any{"any_": chunk},
				},
				"task_runs": map[string]any{
					"operator":     "or_",
					"subflow_runs": map[string]any{"exists_": true},
					"state":        map[string]any{"name": map[string]any{"any_": []string{DBTTestFailed}}},
				},
			}
		})
		if err != nil {
			return nil, err
		}
		byRun := groupTaskRows(rows)
		// The frontier's own task runs, then those of the subflows found in
		// them: both came in this call.
		frontier = w.level(w.level(frontier, byRun), byRun)
	}
	return failedTrees(roots, w.children, w.hasFailed), nil
}

// treeWalk is the state of dbtTestFailed's breadth-first walk.
type treeWalk struct {
	children  map[string][]string // flow run -> child flow runs
	hasFailed map[string]bool     // flow run with a DBT_TEST_FAILED task run of its own
	seen      map[string]bool
}

// level reads the task runs of the flow runs runs and returns the subflows
// not seen before, the next level.
func (w *treeWalk) level(runs []string, byRun map[string][]subflowTask) []string {
	var next []string
	for _, run := range runs {
		for _, tr := range byRun[run] {
			if tr.State.Name == DBTTestFailed {
				w.hasFailed[run] = true
			}
			if c := tr.State.StateDetails.ChildFlowRunID; c != nil && *c != "" {
				w.children[run] = append(w.children[run], *c)
				if !w.seen[*c] {
					w.seen[*c] = true
					next = append(next, *c)
				}
			}
		}
	}
	return next
}

// subflowTask is what the walk reads of a task run.
type subflowTask struct {
	FlowRunID string `json:"flow_run_id"`
	State     *struct {
		Name         string `json:"name"`
		StateDetails struct {
			ChildFlowRunID *string `json:"child_flow_run_id"`
		} `json:"state_details"`
	} `json:"state"`
}

// groupTaskRows decodes task runs by flow run, dropping those without a state.
func groupTaskRows(rows []json.RawMessage) map[string][]subflowTask {
	byRun := map[string][]subflowTask{}
	for _, r := range rows {
		var tr subflowTask
		if err := json.Unmarshal(r, &tr); err != nil || tr.State == nil {
			continue
		}
		byRun[tr.FlowRunID] = append(byRun[tr.FlowRunID], tr)
	}
	return byRun
}

// failedTrees: a root fails when any flow run of its own tree does; each
// tree is walked separately (a root may also be another root's subflow).
func failedTrees(roots []string, children map[string][]string, hasFailed map[string]bool) map[string]bool {
	out := make(map[string]bool, len(roots))
	for _, r := range roots {
		visited := map[string]bool{}
		stack := []string{r}
		for len(stack) > 0 && !out[r] {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if visited[n] {
				continue
			}
			visited[n] = true
			if hasFailed[n] {
				out[r] = true
			}
			stack = append(stack, children[n]...)
		}
	}
	return out
}
