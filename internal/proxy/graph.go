package proxy

import (
	"context"
	"encoding/json"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// graphNode is one node of Prefect's /flow_runs/{id}/graph-v2: a direct task
// run or subflow run of the flow run.
type graphNode struct {
	Kind      string          `json:"kind"` // "flow-run" | "task-run"
	ID        string          `json:"id"`
	Label     string          `json:"label"`
	StartTime json.RawMessage `json:"start_time"`
	EndTime   json.RawMessage `json:"end_time"`
	Children  []struct {
		ID string `json:"id"`
	} `json:"children"`
}

// graphNodes fetches graph-v2 and returns its nodes breadth-first from
// root_node_ids, following `children` (the Python proxy's
// traverse_flow_run_graph_v2), with flow-run labels stripped of their
// "<flow name> / " prefix. A node reached twice (a task with two upstream
// tasks) is listed once; Python listed it again on every path.
func (s *Service) graphNodes(ctx context.Context, flowRunID string) ([]graphNode, error) {
	var g struct {
		RootNodeIDs *[]string           `json:"root_node_ids"`
		Nodes       [][]json.RawMessage `json:"nodes"`
	}
	if err := s.prefect.Get(ctx, "/flow_runs/"+flowRunID+"/graph-v2", &g); err != nil {
		return nil, err
	}
	if g.RootNodeIDs == nil {
		return nil, nil
	}
	byID := make(map[string]graphNode, len(g.Nodes))
	for _, pair := range g.Nodes {
		if len(pair) != 2 {
			return nil, fmt.Errorf("graph-v2 of %s: node is not an [id, node] pair", flowRunID)
		}
		var id string
		var n graphNode
		if err := json.Unmarshal(pair[0], &id); err != nil {
			return nil, fmt.Errorf("graph-v2 of %s: %w", flowRunID, err)
		}
		if err := json.Unmarshal(pair[1], &n); err != nil {
			return nil, fmt.Errorf("graph-v2 of %s: %w", flowRunID, err)
		}
		n.Label = stripFlowName(n.Kind, n.Label)
		if _, dup := byID[id]; !dup {
			byID[id] = n
		}
	}
	var out []graphNode
	queue := append([]string(nil), *g.RootNodeIDs...)
	visited := make(map[string]bool, len(byID))
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		n, ok := byID[id]
		if !ok || visited[id] {
			continue
		}
		visited[id] = true
		out = append(out, n)
		for _, c := range n.Children {
			queue = append(queue, c.ID)
		}
	}
	return out, nil
}

// runObj is what the graph routes read from each node's flow run or task run.
type runObj struct {
	StateType        json.RawMessage `json:"state_type"`
	StateName        json.RawMessage `json:"state_name"`
	TotalRunTime     json.RawMessage `json:"total_run_time"`
	EstimatedRunTime json.RawMessage `json:"estimated_run_time"`
	Parameters       json.RawMessage `json:"parameters"`
}

// nodeRuns returns the flow run or task run behind every node. known holds
// rows already read (the run's task runs, asked for alongside graph-v2); the
// nodes they miss — all of them without it, or
// a node created between the two reads — are read by id: one batched
// /flow_runs/filter and one /task_runs/filter, in parallel, instead of the
// Python proxy's GET per node. A node whose run is gone is an error, as a
// failed GET was.
func (s *Service) nodeRuns(ctx context.Context, nodes []graphNode, known ...[]json.RawMessage) (map[string]runObj, error) {
	objs := make(map[string]runObj, len(nodes))
	for _, rows := range known {
		if err := addRunObjs(objs, rows); err != nil {
			return nil, err
		}
	}
	var flowIDs, taskIDs []string
	for _, n := range nodes {
		if _, ok := objs[n.ID]; ok {
			continue
		}
		switch n.Kind {
		case "flow-run":
			flowIDs = append(flowIDs, n.ID)
		case "task-run":
			taskIDs = append(taskIDs, n.ID)
		}
	}
	var flowRows, taskRows []json.RawMessage
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		flowRows, err = s.filterByIDs(gctx, "/flow_runs/filter", flowIDs, func(c []string) map[string]any {
			return map[string]any{"flow_runs": map[string]any{"id": map[string]any{"any_": c}}}
		})
		return err
	})
	g.Go(func() (err error) {
		taskRows, err = s.filterByIDs(gctx, "/task_runs/filter", taskIDs, func(c []string) map[string]any {
			return map[string]any{"task_runs": map[string]any{"id": map[string]any{"any_": c}}}
		})
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := addRunObjs(objs, append(flowRows, taskRows...)); err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if _, ok := objs[n.ID]; !ok && (n.Kind == "flow-run" || n.Kind == "task-run") {
			return nil, fmt.Errorf("%s %s of the graph not found", n.Kind, n.ID)
		}
	}
	return objs, nil
}

func addRunObjs(objs map[string]runObj, rows []json.RawMessage) error {
	for _, r := range rows {
		var o struct {
			ID string `json:"id"`
			runObj
		}
		if err := json.Unmarshal(r, &o); err != nil {
			return err
		}
		objs[o.ID] = o.runObj
	}
	return nil
}

// graphAndTasks reads graph-v2 and, alongside it, every task run of the run
// (taskRunsOf): a guess at the task nodes' runs made before graph-v2 names
// them. When the guess fails its rows are nil and nodeRuns asks by the ids
// graph-v2 gives, as it would without guessing: a failed guess never changes
// an answer, it only costs the usual calls. graph-v2's error is the read's.
func (s *Service) graphAndTasks(ctx context.Context, flowRunID string) ([]graphNode, []json.RawMessage, error) {
	var nodes []graphNode
	var tasks []json.RawMessage
	err := withSpeculation(ctx,
		func(ctx context.Context) (err error) { nodes, err = s.graphNodes(ctx, flowRunID); return err },
		func(ctx context.Context) error {
			if rows, err := s.taskRunsOf(ctx, flowRunID); err == nil {
				tasks = rows
			}
			return nil
		})
	return nodes, tasks, err
}

// taskRunsOf reads every task run of a flow run: a superset of its graph-v2
// task-run nodes (graph-v2 lists the run's non-PENDING task runs, a subflow
// parent standing for its subflow), so it can be asked before graph-v2 answers.
func (s *Service) taskRunsOf(ctx context.Context, flowRunID string) ([]json.RawMessage, error) {
	return s.prefect.FilterAll(ctx, "/task_runs/filter", map[string]any{
		"flow_runs": map[string]any{"id": map[string]any{"any_": []string{flowRunID}}},
	}, 0)
}

// GraphNode is one row of route 28.
type GraphNode struct {
	ID               string          `json:"id"`
	Kind             string          `json:"kind"`
	Label            string          `json:"label"`
	StateType        json.RawMessage `json:"state_type"`
	StateName        json.RawMessage `json:"state_name"`
	StartTime        json.RawMessage `json:"start_time"`
	EndTime          json.RawMessage `json:"end_time"`
	TotalRunTime     json.RawMessage `json:"total_run_time"`
	EstimatedRunTime json.RawMessage `json:"estimated_run_time"`
	// Parameters is the run's parameters.payload, present only when the run
	// has one (Django's history reads parameters["connection_id"]).
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// FlowRunGraph is route 28 (GET /proxy/flow_runs/graph/{id}): the run's direct
// task runs and subflows in graph-v2 breadth-first order. start/end times
// come from the graph node, states and run times from the run objects.
// Calls: graph-v2 and the run's task runs at once (the task nodes' runs are
// read by their flow run, not by the ids graph-v2 gives), then the subflow
// runs by id when there are subflow nodes: one round trip for a run without
// subflows, and never more calls than reading every node by id. (Asking for
// the subflows by parent too would save that second round trip, for one more
// call on every run without subflows; Prefect on SQLite answers concurrent
// calls one after another, so a call saved is worth more than a round trip.)
func (s *Service) FlowRunGraph(ctx context.Context, id string) ([]GraphNode, error) {
	const msg = "failed to fetch graph for flow_run"
	cid, ok := canonicalID(id)
	if !ok {
		return nil, badID(msg)
	}
	out, err := sharedRead(ctx, s, "graph:"+cid, func(ctx context.Context) ([]GraphNode, error) {
		nodes, tasks, err := s.graphAndTasks(ctx, cid)
		if err != nil {
			return nil, err
		}
		objs, err := s.nodeRuns(ctx, nodes, tasks)
		if err != nil {
			return nil, err
		}
		out := make([]GraphNode, len(nodes))
		for i, n := range nodes {
			o := objs[n.ID]
			gn := GraphNode{
				ID: n.ID, Kind: n.Kind, Label: n.Label,
				StateType: rawOrNull(o.StateType), StateName: rawOrNull(o.StateName),
				StartTime: rawOrNull(n.StartTime), EndTime: rawOrNull(n.EndTime),
				TotalRunTime: rawOrZero(o.TotalRunTime), EstimatedRunTime: rawOrZero(o.EstimatedRunTime),
			}
			var params map[string]json.RawMessage
			if json.Unmarshal(o.Parameters, &params) == nil {
				if p, ok := params["payload"]; ok {
					gn.Parameters = p
				}
			}
			out[i] = gn
		}
		return out, nil
	})
	return out, translate(err, failed(msg))
}

func rawOrNull(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage("null")
	}
	return v
}

// rawOrZero mirrors Python's run_obj.get(key, 0).
func rawOrZero(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage("0")
	}
	return v
}
