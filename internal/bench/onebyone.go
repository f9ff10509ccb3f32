package bench

import (
	"context"
	"fmt"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// HistoryRun is what the baseline computes per run (enough to check it did
// the same work as the proxy route).
type HistoryRun struct {
	ID        string
	Status    string
	StateName string
}

// OneByOneHistory replays the Python proxy's GET /proxy/flow_runs call pattern
// (route 19), strictly sequentially: one flow-run
// filter, then for each run the recursive v1 graph (one GET per flow run in
// its subflow tree) and one task-run filter. It is the baseline the history
// route is compared with. Two things favour the baseline over the real Python
// proxy, so the measured speed-up is a lower bound: it reuses keep-alive
// connections (Python's module-level requests.get opened one per call), and it
// calls /task_runs/filter without the trailing slash that cost Python an extra
// 307 round trip. It returns the runs and the number of Prefect calls made.
func OneByOneHistory(ctx context.Context, pc *prefect.Client, deploymentID string, limit int) ([]HistoryRun, int, error) {
	body := map[string]any{
		"sort":        "START_TIME_DESC",
		"deployments": map[string]any{"id": map[string]any{"any_": []string{deploymentID}}},
		"flow_runs": map[string]any{"operator": "and_", "state": map[string]any{
			"type": map[string]any{"any_": []string{"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}}}},
	}
	if limit > 0 {
		body["limit"] = limit
	}
	type state struct {
		Type         string `json:"type"`
		Name         string `json:"name"`
		StateDetails struct {
			ChildFlowRunID *string `json:"child_flow_run_id"`
		} `json:"state_details"`
	}
	var runs []struct {
		ID    string `json:"id"`
		State state  `json:"state"`
	}
	calls := 1
	if err := pc.PostRead(ctx, "/flow_runs/filter", body, &runs); err != nil {
		return nil, calls, err
	}
	var traverse func(id string, ids []string) ([]string, error)
	traverse = func(id string, ids []string) ([]string, error) {
		ids = append(ids, id)
		var nodes []struct {
			State *state `json:"state"`
		}
		calls++
		if err := pc.Get(ctx, "/flow_runs/"+id+"/graph", &nodes); err != nil {
			return nil, err
		}
		for _, n := range nodes {
			if n.State != nil && n.State.StateDetails.ChildFlowRunID != nil {
				var err error
				if ids, err = traverse(*n.State.StateDetails.ChildFlowRunID, ids); err != nil {
					return nil, err
				}
			}
		}
		return ids, nil
	}
	out := make([]HistoryRun, 0, len(runs))
	for _, r := range runs {
		ids, err := traverse(r.ID, nil)
		if err != nil {
			return nil, calls, fmt.Errorf("graph of %s: %w", r.ID, err)
		}
		var tasks []struct {
			State *state `json:"state"`
		}
		calls++
		if err := pc.PostRead(ctx, "/task_runs/filter", map[string]any{
			"flow_runs": map[string]any{"operator": "and_", "id": map[string]any{"any_": ids}},
		}, &tasks); err != nil {
			return nil, calls, fmt.Errorf("task runs of %s: %w", r.ID, err)
		}
		name := r.State.Name
		for _, t := range tasks {
			if t.State != nil && t.State.Name == "DBT_TEST_FAILED" {
				name = "DBT_TEST_FAILED"
				break
			}
		}
		out = append(out, HistoryRun{ID: r.ID, Status: r.State.Type, StateName: name})
	}
	return out, calls, nil
}
