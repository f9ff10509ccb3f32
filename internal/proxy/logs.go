package proxy

import (
	"context"
	"encoding/json"
	"strconv"

	"golang.org/x/sync/errgroup"
)

// LogLine is the Python proxy's parse_log: the three fields Django reads.
type LogLine struct {
	Level     json.RawMessage `json:"level"`
	Timestamp json.RawMessage `json:"timestamp"`
	Message   json.RawMessage `json:"message"`
}

// logRow is a Prefect log as the proxy reads it.
type logRow struct {
	FlowRunID *string `json:"flow_run_id"`
	TaskRunID *string `json:"task_run_id"`
	LogLine
}

func decodeLogs(rows []json.RawMessage) ([]logRow, error) {
	out := make([]logRow, len(rows))
	for i, r := range rows {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LogPage is route 26's answer.
type LogPage struct {
	Offset int       `json:"offset"`
	Logs   []LogLine `json:"logs"`
}

// FlowRunLogs is route 26 (GET /proxy/flow_runs/logs/{id}): the logs of the
// run and of its direct subflows (graph-v2 "flow-run" nodes), oldest first,
// from offset. limit 0 means every log from offset on (Python stopped at
// Prefect's 200); limit > 200 is paged rather than rejected. taskRunID, when
// set, keeps only that task run's logs. An unknown run has no logs (200),
// as in Python, whose graph-v2 error was swallowed.
func (s *Service) FlowRunLogs(ctx context.Context, id, taskRunID string, limit, offset int) (LogPage, error) {
	const msg = "failed to fetch logs for flow_run"
	cid, ok := canonicalID(id)
	if !ok {
		return LogPage{}, badID(msg)
	}
	tid := ""
	if taskRunID != "" {
		if tid, ok = canonicalID(taskRunID); !ok {
			return LogPage{}, badID(msg)
		}
	}
	key := "logs:" + cid + "|" + tid + "|" + strconv.Itoa(limit) + "|" + strconv.Itoa(offset)
	page, err := sharedRead(ctx, s, key, func(ctx context.Context) (LogPage, error) {
		ids := []string{cid}
		nodes, err := s.graphNodes(ctx, cid)
		if isUpstream(err) {
			return LogPage{}, err
		}
		for _, n := range nodes {
			if n.Kind == "flow-run" {
				ids = append(ids, n.ID)
			}
		}
		filter := map[string]any{"operator": "and_", "flow_run_id": map[string]any{"any_": ids}}
		if tid != "" {
			filter["task_run_id"] = map[string]any{"any_": []string{tid}}
		}
		rows, err := s.prefect.FilterAll(ctx, "/logs/filter", map[string]any{
			"logs": filter, "sort": "TIMESTAMP_ASC", "offset": offset,
		}, limit)
		if err != nil {
			return LogPage{}, err
		}
		logs, err := decodeLogs(uniqueByID(rows))
		if err != nil {
			return LogPage{}, err
		}
		out := LogPage{Offset: offset, Logs: make([]LogLine, len(logs))}
		for i, l := range logs {
			out.Logs[i] = l.LogLine
		}
		return out, nil
	})
	return page, translate(err, failed(msg))
}

// NodeLogs is one row of route 27.
type NodeLogs struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Label     string          `json:"label"`
	StateType json.RawMessage `json:"state_type"`
	StateName json.RawMessage `json:"state_name"`
	StartTime json.RawMessage `json:"start_time"`
	EndTime   json.RawMessage `json:"end_time"`
	Logs      []LogLine       `json:"logs"`
}

// FlowRunLogsByNode is route 27 (GET /proxy/flow_runs/v1/logs/{id}): for each
// graph-v2 node in breadth-first order, its state and its logs oldest first —
// a subflow node gets every log of that subflow run, a task node the logs of
// that task run. Python made 2 calls per node and kept 200 logs per node;
// this pages, so no log is cut. Calls: graph-v2 and the run's task runs (asked
// by the run's id) at once, then the logs of every node in one filter (a
// subflow's by flow_run_id or a task's by task_run_id) alongside the subflow
// runs by id, when there are subflow nodes: 3 calls, or 4 with subflows.
func (s *Service) FlowRunLogsByNode(ctx context.Context, id string) ([]NodeLogs, error) {
	const msg = "failed to fetch logs for flow_run"
	cid, ok := canonicalID(id)
	if !ok {
		return nil, badID(msg)
	}
	out, err := sharedRead(ctx, s, "logsv1:"+cid, func(ctx context.Context) ([]NodeLogs, error) {
		nodes, tasks, err := s.graphAndTasks(ctx, cid)
		if err != nil {
			return nil, err
		}
		var objs map[string]runObj
		var logs []json.RawMessage
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() (err error) { objs, err = s.nodeRuns(gctx, nodes, tasks); return err })
		g.Go(func() (err error) { logs, err = s.nodeLogs(gctx, nodes); return err })
		if err := g.Wait(); err != nil {
			return nil, err
		}
		byNode, err := logsByNode(nodes, logs)
		if err != nil {
			return nil, err
		}
		out := make([]NodeLogs, len(nodes))
		for i, n := range nodes {
			o := objs[n.ID]
			logs := byNode[n.ID]
			if logs == nil {
				logs = []LogLine{}
			}
			out[i] = NodeLogs{
				ID: n.ID, Kind: n.Kind, Label: n.Label,
				StateType: rawOrNull(o.StateType), StateName: rawOrNull(o.StateName),
				StartTime: rawOrNull(n.StartTime), EndTime: rawOrNull(n.EndTime),
				Logs: logs,
			}
		}
		return out, nil
	})
	return out, translate(err, failed(msg))
}

// nodeLogs reads, oldest first, the logs of the nodes: every log of a subflow
// run, a task run's own. Both kinds go in one or_ filter, chunked so that a
// call carries at most idChunk ids.
func (s *Service) nodeLogs(ctx context.Context, nodes []graphNode) ([]json.RawMessage, error) {
	ids := make([]string, 0, len(nodes))
	isFlow := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		switch n.Kind {
		case "flow-run":
			isFlow[n.ID] = true
			ids = append(ids, n.ID)
		case "task-run":
			ids = append(ids, n.ID)
		}
	}
	return s.filterByIDs(ctx, "/logs/filter", ids, func(c []string) map[string]any {
		var flows, tasks []string
		for _, id := range c {
			if isFlow[id] {
				flows = append(flows, id)
			} else {
				tasks = append(tasks, id)
			}
		}
		f := map[string]any{"operator": "or_"}
		if len(flows) > 0 {
			f["flow_run_id"] = map[string]any{"any_": flows}
		}
		if len(tasks) > 0 {
			f["task_run_id"] = map[string]any{"any_": tasks}
		}
		return map[string]any{"logs": f, "sort": "TIMESTAMP_ASC"}
	})
}

// logsByNode groups logs by node: a log of a subflow node's run (whatever
// its task) belongs to that node, any other to its task run's node.
func logsByNode(nodes []graphNode, rows []json.RawMessage) (map[string][]LogLine, error) {
	flows := map[string]bool{}
	for _, n := range nodes {
		if n.Kind == "flow-run" {
			flows[n.ID] = true
		}
	}
	logs, err := decodeLogs(uniqueByID(rows))
	if err != nil {
		return nil, err
	}
	byNode := map[string][]LogLine{}
	for _, l := range logs {
		switch {
		case l.FlowRunID != nil && flows[*l.FlowRunID]:
			byNode[*l.FlowRunID] = append(byNode[*l.FlowRunID], l.LogLine)
		case l.TaskRunID != nil:
			byNode[*l.TaskRunID] = append(byNode[*l.TaskRunID], l.LogLine)
		}
	}
	return byNode, nil
}
