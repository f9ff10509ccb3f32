package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// OneByOneFlowRun is the Python proxy's route 21 (GET /proxy/flow_runs/{id}),
// strictly sequentially: the run, its subflow tree by v1 graphs, one task-run
// filter. It returns the answer the route must give.
func OneByOneFlowRun(ctx context.Context, pc *prefect.Client, id string) (any, error) {
	var run map[string]any
	if err := pc.Get(ctx, "/flow_runs/"+id, &run); err != nil {
		return nil, err
	}
	ids := []string{}
	var traverse func(id string) error
	traverse = func(id string) error {
		ids = append(ids, id)
		var nodes []struct {
			State *struct {
				StateDetails struct {
					ChildFlowRunID *string `json:"child_flow_run_id"`
				} `json:"state_details"`
			} `json:"state"`
		}
		if err := pc.Get(ctx, "/flow_runs/"+id+"/graph", &nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.State != nil && n.State.StateDetails.ChildFlowRunID != nil {
				if err := traverse(*n.State.StateDetails.ChildFlowRunID); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := traverse(id); err != nil {
		return nil, err
	}
	var tasks []struct {
		State *struct {
			Name string `json:"name"`
		} `json:"state"`
	}
	if err := pc.PostRead(ctx, "/task_runs/filter", map[string]any{
		"flow_runs": map[string]any{"operator": "and_", "id": map[string]any{"any_": ids}},
	}, &tasks); err != nil {
		return nil, err
	}
	state, _ := run["state"].(map[string]any)
	run["status"], run["state_name"] = state["type"], state["name"]
	for _, t := range tasks {
		if t.State != nil && t.State.Name == "DBT_TEST_FAILED" {
			run["state_name"] = "DBT_TEST_FAILED"
		}
	}
	return run, nil
}

// OneByOneGraph is the Python proxy's route 28 (withLogs false) or 27 (true):
// graph-v2, then per node a GET of its run (and a log filter). It returns the
// answer the route must give.
func OneByOneGraph(ctx context.Context, pc *prefect.Client, id string, withLogs bool) (any, error) {
	var g struct {
		RootNodeIDs []string `json:"root_node_ids"`
		Nodes       [][]json.RawMessage
	}
	if err := pc.Get(ctx, "/flow_runs/"+id+"/graph-v2", &g); err != nil {
		return nil, err
	}
	byID := map[string]map[string]any{}
	for _, pair := range g.Nodes {
		var n map[string]any
		if err := json.Unmarshal(pair[1], &n); err != nil {
			return nil, err
		}
		byID[n["id"].(string)] = n
	}
	out := []any{}
	queue := append([]string(nil), g.RootNodeIDs...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		nid := queue[0]
		queue = queue[1:]
		n, ok := byID[nid]
		if !ok || seen[nid] {
			continue
		}
		seen[nid] = true
		for _, c := range n["children"].([]any) {
			queue = append(queue, c.(map[string]any)["id"].(string))
		}
		row, err := oneByOneNode(ctx, pc, n, withLogs)
		if err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, nil
}

func oneByOneNode(ctx context.Context, pc *prefect.Client, n map[string]any, withLogs bool) (map[string]any, error) {
	kind, nid, label := n["kind"].(string), n["id"].(string), n["label"].(string)
	path, logKey := "/task_runs/", "task_run_id"
	if kind == "flow-run" {
		path, logKey = "/flow_runs/", "flow_run_id"
		if _, after, ok := strings.Cut(label, " / "); ok {
			label = after
		}
	}
	var run map[string]any
	if err := pc.Get(ctx, path+nid, &run); err != nil {
		return nil, err
	}
	row := map[string]any{"id": nid, "kind": kind, "label": label, "state_type": run["state_type"],
		"state_name": run["state_name"], "start_time": n["start_time"], "end_time": n["end_time"]}
	if !withLogs {
		row["total_run_time"], row["estimated_run_time"] = run["total_run_time"], run["estimated_run_time"]
		params, _ := run["parameters"].(map[string]any)
		if p, ok := params["payload"]; ok {
			row["parameters"] = p
		}
		return row, nil
	}
	var logs []map[string]any
	if err := pc.PostRead(ctx, "/logs/filter", map[string]any{
		"logs": map[string]any{logKey: map[string]any{"any_": []string{nid}}}, "sort": "TIMESTAMP_ASC",
	}, &logs); err != nil {
		return nil, err
	}
	lines := []any{}
	for _, l := range logs {
		lines = append(lines, map[string]any{"level": l["level"], "timestamp": l["timestamp"], "message": l["message"]})
	}
	row["logs"] = lines
	return row, nil
}

// CallCounter is a reverse proxy in front of a Prefect API that counts the
// calls made through it: how the benchmarks count a route's Prefect calls on
// a real Prefect (only in a separate pass, never while timing).
type CallCounter struct {
	URL   string // API root to give the proxy under test
	calls atomic.Int64
	srv   *httptest.Server
}

// NewCallCounter forwards to the Prefect API root api.
func NewCallCounter(api string) (*CallCounter, error) {
	u, err := url.Parse(api)
	if err != nil {
		return nil, err
	}
	c := &CallCounter{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.calls.Add(1)
		rp.ServeHTTP(w, r)
	}))
	c.URL = c.srv.URL + u.Path
	return c, nil
}

// Calls is the number of calls forwarded so far.
func (c *CallCounter) Calls() int64 { return c.calls.Load() }

// Close stops the counter.
func (c *CallCounter) Close() { c.srv.Close() }

// String names the counter in messages.
func (c *CallCounter) String() string { return fmt.Sprintf("call counter at %s", c.URL) }
