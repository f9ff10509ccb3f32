package testenv

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// Seeding helpers: they create objects in Prefect over its REST API and fail
// the test on any error. Names are unique unless given, so tests can share
// one server.

// Flow is a Prefect flow.
type Flow struct{ ID, Name string }

// CreateFlow creates (or finds: flows are idempotent by name) a flow.
func (s *PrefectServer) CreateFlow(tb testing.TB, name string) Flow {
	tb.Helper()
	if name == "" {
		name = Unique("flow")
	}
	var out struct{ ID string }
	s.Do(tb, "POST", "/flows/", map[string]any{"name": name}, &out)
	return Flow{ID: out.ID, Name: name}
}

// DeploymentSpec describes a deployment to create; zero fields get defaults.
type DeploymentSpec struct {
	Name       string         // default: unique
	FlowName   string         // default: unique
	Tags       []string       // e.g. the org slug
	Parameters map[string]any // default: {}
	Cron       string         // "" = no schedule
	// ScheduleInactive creates the cron schedule with active=false.
	ScheduleInactive bool
	Paused           bool
	WorkPool         string // must exist (CreateWorkPool)
	WorkQueue        string
	Entrypoint       string
}

// Deployment is a created deployment.
type Deployment struct {
	ID, Name string
	Flow     Flow
}

// CreateDeployment creates a deployment (and its flow).
func (s *PrefectServer) CreateDeployment(tb testing.TB, spec DeploymentSpec) Deployment {
	tb.Helper()
	if spec.Name == "" {
		spec.Name = Unique("dep")
	}
	if spec.Parameters == nil {
		spec.Parameters = map[string]any{}
	}
	if spec.Tags == nil {
		spec.Tags = []string{}
	}
	flow := s.CreateFlow(tb, spec.FlowName)
	body := map[string]any{
		"name":       spec.Name,
		"flow_id":    flow.ID,
		"tags":       spec.Tags,
		"parameters": spec.Parameters,
		"paused":     spec.Paused,
		"schedules":  []any{},
	}
	if spec.Cron != "" {
		body["schedules"] = []any{map[string]any{
			"schedule": map[string]any{"cron": spec.Cron, "timezone": "UTC", "day_or": true},
			"active":   !spec.ScheduleInactive,
		}}
	}
	if spec.WorkPool != "" {
		body["work_pool_name"] = spec.WorkPool
	}
	if spec.WorkQueue != "" {
		body["work_queue_name"] = spec.WorkQueue
	}
	if spec.Entrypoint != "" {
		body["entrypoint"] = spec.Entrypoint
	}
	var out struct{ ID string }
	s.Do(tb, "POST", "/deployments/", body, &out)
	return Deployment{ID: out.ID, Name: spec.Name, Flow: flow}
}

// FlowRun is a created flow run.
type FlowRun struct{ ID, Name string }

// CreateFlowRun creates a SCHEDULED run of a deployment (scheduled now).
// params may be nil.
func (s *PrefectServer) CreateFlowRun(tb testing.TB, deploymentID string, params map[string]any) FlowRun {
	tb.Helper()
	body := map[string]any{}
	if params != nil {
		body["parameters"] = params
	}
	var out struct{ ID, Name string }
	s.Do(tb, "POST", "/deployments/"+deploymentID+"/create_flow_run", body, &out)
	return FlowRun{ID: out.ID, Name: out.Name}
}

// SetFlowRunState posts a state to a flow run and returns Prefect's
// orchestration result ({"status": "ACCEPT"|..., "state": {...}}).
func (s *PrefectServer) SetFlowRunState(tb testing.TB, runID string, state map[string]any, force bool) map[string]any {
	tb.Helper()
	var out map[string]any
	s.Do(tb, "POST", "/flow_runs/"+runID+"/set_state", map[string]any{"state": state, "force": force}, &out)
	return out
}

// State builds a state body: type (e.g. "COMPLETED") and an optional name
// (e.g. "DBT_TEST_FAILED", "Late").
func State(typ, name string) map[string]any {
	st := map[string]any{"type": typ}
	if name != "" {
		st["name"] = name
	}
	return st
}

// terminalOrRunning are the state types that imply the run started.
var startedTypes = map[string]bool{
	"RUNNING": true, "COMPLETED": true, "FAILED": true, "CRASHED": true,
	"CANCELLED": true, "CANCELLING": true, "PAUSED": true,
}

// RunTo forces a flow run into a state as a worker would have driven it:
// through RUNNING first when the target implies the run started, so that
// start_time, end_time and total_run_time are filled in. typ "SCHEDULED" with
// name "Late" makes a late run; "PENDING" a pending one.
func (s *PrefectServer) RunTo(tb testing.TB, runID, typ, name string) {
	tb.Helper()
	if startedTypes[typ] && typ != "RUNNING" {
		s.SetFlowRunState(tb, runID, State("RUNNING", ""), true)
		time.Sleep(20 * time.Millisecond) // a non-zero run time
	}
	res := s.SetFlowRunState(tb, runID, State(typ, name), true)
	if res["status"] != "ACCEPT" {
		tb.Fatalf("testenv: set_state %s/%s on %s: %v", typ, name, runID, res)
	}
}

// CreateFlowRunIn creates a run of the deployment and drives it to a state.
func (s *PrefectServer) CreateFlowRunIn(tb testing.TB, deploymentID, typ, name string) FlowRun {
	tb.Helper()
	fr := s.CreateFlowRun(tb, deploymentID, nil)
	if typ != "" && !(typ == "SCHEDULED" && name == "") {
		s.RunTo(tb, fr.ID, typ, name)
	}
	return fr
}

// History is a deployment whose terminal runs are shaped like Dalgo's
// pipelines (see SeedHistory).
type History struct {
	Deployment Deployment
	Runs       []string // top-level run ids, in creation order
}

// SeedHistory creates, under a new flow and deployment named name, runs
// terminal top-level runs (every 10th FAILED, the others COMPLETED), each
// with tasksPerRun completed task runs and one subflow holding tasksPerRun
// task runs of its own; in every 7th run the subflow's first task is
// DBT_TEST_FAILED. It is the world the read benchmarks page through, the
// same shape as internal/bench's generated one.
func (s *PrefectServer) SeedHistory(tb testing.TB, name string, runs, tasksPerRun int) History {
	tb.Helper()
	dep := s.CreateDeployment(tb, DeploymentSpec{Name: name, FlowName: name})
	h := History{Deployment: dep}
	for i := range runs {
		state := "COMPLETED"
		if i%10 == 9 {
			state = "FAILED"
		}
		fr := s.CreateFlowRunIn(tb, dep.ID, state, "")
		for j := range tasksPerRun {
			s.CreateTaskRun(tb, fr.ID, fmt.Sprintf("task-%d", j), "COMPLETED", "")
		}
		sub := s.CreateSubflowWith(tb, fr.ID, SubflowSpec{FlowName: name + "-sub", Type: state})
		for j := range tasksPerRun {
			stateName := ""
			if i%7 == 6 && j == 0 {
				stateName = "DBT_TEST_FAILED"
			}
			s.CreateTaskRun(tb, sub.RunID, fmt.Sprintf("dbt-%d", j), "COMPLETED", stateName)
		}
		h.Runs = append(h.Runs, fr.ID)
	}
	return h
}

// GetFlowRun reads a flow run as Prefect returns it.
func (s *PrefectServer) GetFlowRun(tb testing.TB, id string) map[string]any {
	tb.Helper()
	var out map[string]any
	s.Do(tb, "GET", "/flow_runs/"+id, nil, &out)
	return out
}

// CreateTaskRun creates a task run in a flow run and, when typ is set,
// forces it RUNNING and then into typ/name (e.g. "COMPLETED",
// "DBT_TEST_FAILED"). stateDetails may be nil.
func (s *PrefectServer) CreateTaskRun(tb testing.TB, flowRunID, name, typ, stateName string) string {
	tb.Helper()
	return s.createTaskRun(tb, flowRunID, name, typ, stateName, nil)
}

func (s *PrefectServer) createTaskRun(tb testing.TB, flowRunID, name, typ, stateName string, details map[string]any) string {
	tb.Helper()
	if name == "" {
		name = Unique("task")
	}
	var out struct{ ID string }
	s.Do(tb, "POST", "/task_runs/", map[string]any{
		"flow_run_id": flowRunID, "task_key": name, "dynamic_key": "0", "name": name,
	}, &out)
	if typ == "" {
		return out.ID
	}
	set := func(st map[string]any) {
		var res map[string]any
		s.Do(tb, "POST", "/task_runs/"+out.ID+"/set_state", map[string]any{"state": st, "force": true}, &res)
		if res["status"] != "ACCEPT" {
			tb.Fatalf("testenv: task run %s set_state %v: %v", out.ID, st, res)
		}
	}
	running := State("RUNNING", "")
	if details != nil {
		running["state_details"] = details
	}
	set(running)
	if typ != "RUNNING" {
		time.Sleep(10 * time.Millisecond)
		final := State(typ, stateName)
		if details != nil {
			final["state_details"] = details
		}
		set(final)
	}
	return out.ID
}

// Subflow is a child flow run created inside a parent flow run.
type Subflow struct {
	RunID     string // the child flow run
	RunName   string
	FlowName  string
	TaskRunID string // the parent's task run standing for the subflow call
}

// CreateSubflow creates a child flow run the way Prefect records a subflow
// call: a task run in the parent (whose state_details.child_flow_run_id names
// the child, as the v1 graph reads it) and a flow run whose
// parent_task_run_id is that task run (as graph-v2 reads it). The child is
// driven to typ/stateName when typ is set.
func (s *PrefectServer) CreateSubflow(tb testing.TB, parentRunID, flowName, typ, stateName string) Subflow {
	tb.Helper()
	return s.CreateSubflowWith(tb, parentRunID, SubflowSpec{FlowName: flowName, Type: typ, StateName: stateName})
}

// SubflowSpec describes a subflow for CreateSubflowWith.
type SubflowSpec struct {
	FlowName   string // default: unique
	Type       string // state type to drive the child to ("" leaves it PENDING)
	StateName  string
	Parameters map[string]any // the child run's parameters (e.g. {"payload": {...}})
}

// CreateSubflowWith is CreateSubflow with parameters.
func (s *PrefectServer) CreateSubflowWith(tb testing.TB, parentRunID string, spec SubflowSpec) Subflow {
	tb.Helper()
	flowName, typ, stateName := spec.FlowName, spec.Type, spec.StateName
	flow := s.CreateFlow(tb, flowName)
	taskName := flow.Name + "-call"
	var tr struct{ ID string }
	s.Do(tb, "POST", "/task_runs/", map[string]any{
		"flow_run_id": parentRunID, "task_key": taskName, "dynamic_key": "0", "name": taskName,
	}, &tr)
	var child struct{ ID, Name string }
	body := map[string]any{"flow_id": flow.ID, "parent_task_run_id": tr.ID, "state": State("PENDING", "")}
	if spec.Parameters != nil {
		body["parameters"] = spec.Parameters
	}
	s.Do(tb, "POST", "/flow_runs/", body, &child)
	if typ != "" {
		s.RunTo(tb, child.ID, typ, stateName)
	}
	details := map[string]any{"child_flow_run_id": child.ID}
	for _, st := range []string{"RUNNING", "COMPLETED"} {
		state := State(st, "")
		state["state_details"] = details
		var res map[string]any
		s.Do(tb, "POST", "/task_runs/"+tr.ID+"/set_state", map[string]any{"state": state, "force": true}, &res)
	}
	return Subflow{RunID: child.ID, RunName: child.Name, FlowName: flow.Name, TaskRunID: tr.ID}
}

// Log is one seeded log line.
type Log struct {
	Level     int
	Message   string
	Timestamp time.Time
}

// WriteLogs writes n log lines for a flow run (and task run, if not empty),
// one millisecond apart starting at start, with messages "<prefix> 0000",
// "<prefix> 0001", ... so order and paging are checkable.
func (s *PrefectServer) WriteLogs(tb testing.TB, flowRunID, taskRunID, prefix string, n int, start time.Time) []Log {
	tb.Helper()
	logs := make([]Log, 0, n)
	batch := make([]map[string]any, 0, 200)
	flush := func() {
		if len(batch) > 0 {
			s.Do(tb, "POST", "/logs/", batch, nil)
			batch = batch[:0]
		}
	}
	for i := 0; i < n; i++ {
		l := Log{Level: 20, Message: fmt.Sprintf("%s %04d", prefix, i), Timestamp: start.Add(time.Duration(i) * time.Millisecond).UTC()}
		if i%10 == 9 {
			l.Level = 40
		}
		logs = append(logs, l)
		rec := map[string]any{
			"name": "prefect.flow_runs", "level": l.Level, "message": l.Message,
			"timestamp": l.Timestamp.Format(time.RFC3339Nano), "flow_run_id": flowRunID,
		}
		if taskRunID != "" {
			rec["task_run_id"] = taskRunID
		}
		batch = append(batch, rec)
		if len(batch) == 200 {
			flush()
		}
	}
	flush()
	return logs
}

// blockRefs returns a block type's id and its newest schema's id.
func (s *PrefectServer) blockRefs(tb testing.TB, slug string) (typeID, schemaID string) {
	tb.Helper()
	var bt struct{ ID string }
	s.Do(tb, "GET", "/block_types/slug/"+url.PathEscape(slug), nil, &bt)
	var schemas []struct{ ID string }
	s.Do(tb, "POST", "/block_schemas/filter", map[string]any{
		"block_schemas": map[string]any{"block_type_id": map[string]any{"any_": []string{bt.ID}}},
		"limit":         1,
	}, &schemas)
	if len(schemas) == 0 {
		tb.Fatalf("testenv: block type %s has no schema", slug)
	}
	return bt.ID, schemas[0].ID
}

// CreateBlock creates a block document of an already registered type (its
// newest schema) and returns its id.
func (s *PrefectServer) CreateBlock(tb testing.TB, typeSlug, name string, data map[string]any) string {
	tb.Helper()
	typeID, schemaID := s.blockRefs(tb, typeSlug)
	var out struct{ ID string }
	s.Do(tb, "POST", "/block_documents/", map[string]any{
		"name": name, "block_type_id": typeID, "block_schema_id": schemaID,
		"data": data, "is_anonymous": false,
	}, &out)
	return out.ID
}

// CreateSecretBlock creates a Secret block ({"value": value}).
func (s *PrefectServer) CreateSecretBlock(tb testing.TB, name, value string) string {
	tb.Helper()
	return s.CreateBlock(tb, "secret", name, map[string]any{"value": value})
}

// CreateWorkPool creates a work pool (type "process") with an extra queue
// when queue is not empty.
func (s *PrefectServer) CreateWorkPool(tb testing.TB, name, queue string) {
	tb.Helper()
	s.Do(tb, "POST", "/work_pools/", map[string]any{"name": name, "type": "process"}, nil)
	if queue != "" {
		s.Do(tb, "POST", "/work_pools/"+url.PathEscape(name)+"/queues", map[string]any{"name": queue}, nil)
	}
}

// WorkerHeartbeat registers an ONLINE worker in a pool, as a running Prefect
// worker does every 30 s.
func (s *PrefectServer) WorkerHeartbeat(tb testing.TB, pool, worker string) {
	tb.Helper()
	s.Do(tb, "POST", "/work_pools/"+url.PathEscape(pool)+"/workers/heartbeat",
		map[string]any{"name": worker, "heartbeat_interval_seconds": 30}, nil)
}
