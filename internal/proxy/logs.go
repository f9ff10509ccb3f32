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
// this pages, so no log is cut, and makes at most two round trips: graph-v2
// together with the run's task runs and their logs (both asked by the run's
// id), then, only when the run has subflows, the subflow runs and their logs
// by the ids graph-v2 gave.
func (s *Service) FlowRunLogsByNode(ctx context.Context, id string) ([]NodeLogs, error) {
	const msg = "failed to fetch logs for flow_run"
	cid, ok := canonicalID(id)
	if !ok {
		return nil, badID(msg)
	}
	out, err := sharedRead(ctx, s, "logsv1:"+cid, func(ctx context.Context) ([]NodeLogs, error) {
		var nodes []graphNode
		var tasks, taskLogs guess
		err := withSpeculation(ctx,
			func(ctx context.Context) (err error) { nodes, err = s.graphNodes(ctx, cid); return err },
			tasks.of(s.taskRunsOf, cid), taskLogs.of(s.taskLogsOf, cid))
		if err != nil {
			return nil, err
		}
		var flowIDs, taskIDs []string
		for _, n := range nodes {
			switch n.Kind {
			case "flow-run":
				flowIDs = append(flowIDs, n.ID)
			case "task-run":
				if !taskLogs.ok {
					taskIDs = append(taskIDs, n.ID)
				}
			}
		}
		var objs map[string]runObj
		var flowLogs []json.RawMessage
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() (err error) { objs, err = s.nodeRuns(gctx, nodes, tasks.rows); return err })
		g.Go(func() (err error) {
			flowLogs, err = s.filterByIDs(gctx, "/logs/filter", flowIDs, func(c []string) map[string]any {
				return map[string]any{"logs": map[string]any{"flow_run_id": map[string]any{"any_": c}}, "sort": "TIMESTAMP_ASC"}
			})
			return err
		})
		g.Go(func() error { // only when the guess failed
			rows, err := s.filterByIDs(gctx, "/logs/filter", taskIDs, func(c []string) map[string]any {
				return map[string]any{"logs": map[string]any{"task_run_id": map[string]any{"any_": c}}, "sort": "TIMESTAMP_ASC"}
			})
			taskLogs.rows = append(taskLogs.rows, rows...)
			return err
		})
		if err := g.Wait(); err != nil {
			return nil, err
		}
		byNode, err := logsByNode(flowLogs, taskLogs.rows)
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

// taskLogsOf reads, oldest first, the logs of every task run of a flow run:
// those of its task-run nodes, asked by the flow run's id before graph-v2
// names the nodes (a task run's logs carry its flow run's id).
func (s *Service) taskLogsOf(ctx context.Context, flowRunID string) ([]json.RawMessage, error) {
	return s.prefect.FilterAll(ctx, "/logs/filter", map[string]any{
		"logs": map[string]any{
			"flow_run_id": map[string]any{"any_": []string{flowRunID}},
			"task_run_id": map[string]any{"is_null_": false},
		},
		"sort": "TIMESTAMP_ASC",
	}, 0)
}

// logsByNode groups logs by node: a subflow's by its flow run, a task's by
// its task run (flowLogs are subflow logs, taskLogs task-run logs).
func logsByNode(flowLogs, taskLogs []json.RawMessage) (map[string][]LogLine, error) {
	byNode := map[string][]LogLine{}
	fl, err := decodeLogs(uniqueByID(flowLogs))
	if err != nil {
		return nil, err
	}
	for _, l := range fl {
		if l.FlowRunID != nil {
			byNode[*l.FlowRunID] = append(byNode[*l.FlowRunID], l.LogLine)
		}
	}
	tl, err := decodeLogs(uniqueByID(taskLogs))
	if err != nil {
		return nil, err
	}
	for _, l := range tl {
		if l.TaskRunID != nil {
			byNode[*l.TaskRunID] = append(byNode[*l.TaskRunID], l.LogLine)
		}
	}
	return byNode, nil
}
