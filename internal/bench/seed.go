package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Seeded is a world written into a real Prefect by Seed.
type Seeded struct {
	FlowID       string
	DeploymentID string
	Runs         []string // top-level run ids
}

// Seed writes into a real Prefect the shape NewWorld generates: under a new
// flow and deployment named name, runs terminal top-level runs, each with
// tasksPerRun task runs and one subflow (a task run whose state names the
// child run, and a child run whose parent_task_run_id is that task, as
// Prefect records subflows) with tasksPerRun task runs of its own. Every 7th
// run has a DBT_TEST_FAILED task in its subflow. Runs are created two at a
// time: the server is shared and its SQLite takes one writer at a time.
func Seed(ctx context.Context, pc *prefect.Client, name string, runs, tasksPerRun int) (Seeded, error) {
	var s Seeded
	var idOnly struct {
		ID string `json:"id"`
	}
	// Writes are retried (on 503, connection errors) as if idempotent: a
	// shared dev Prefect on SQLite answers 503 while another writer holds the
	// lock, and the rolled-back write is safe to repeat. pc's RetryPolicy
	// decides how often.
	post := func(path string, body any, out any) error {
		return pc.Do(ctx, http.MethodPost, path, body, out, true)
	}
	if err := post("/flows/", map[string]any{"name": name}, &idOnly); err != nil {
		return s, err
	}
	s.FlowID = idOnly.ID
	if err := post("/deployments/", map[string]any{"name": name, "flow_id": s.FlowID}, &idOnly); err != nil {
		return s, err
	}
	s.DeploymentID = idOnly.ID
	s.Runs = make([]string, runs)
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i := 0; i < runs; i++ {
		g.Go(func() error {
			var run, sub, subTask struct {
				ID string `json:"id"`
			}
			state := "COMPLETED"
			if i%10 == 9 {
				state = "FAILED"
			}
			if err := post("/deployments/"+s.DeploymentID+"/create_flow_run", map[string]any{
				"name": fmt.Sprintf("%s-run-%03d", name, i), "state": map[string]any{"type": state},
			}, &run); err != nil {
				return err
			}
			mu.Lock()
			s.Runs[i] = run.ID
			mu.Unlock()
			task := func(flowRunID, key, stateName string, out any) error {
				st := map[string]any{"type": "COMPLETED"}
				if stateName != "" {
					st["name"] = stateName
				}
				if out != nil {
					st = map[string]any{"type": "PENDING"}
				}
				return post("/task_runs/", map[string]any{"flow_run_id": flowRunID, "task_key": key,
					"dynamic_key": "0", "name": key, "state": st}, out)
			}
			for j := 0; j < tasksPerRun; j++ {
				if err := task(run.ID, fmt.Sprintf("task-%d", j), "", nil); err != nil {
					return err
				}
			}
			if err := task(run.ID, "subflow", "", &subTask); err != nil {
				return err
			}
			if err := post("/flow_runs/", map[string]any{"flow_id": s.FlowID, "parent_task_run_id": subTask.ID,
				"name": fmt.Sprintf("%s-run-%03d-sub", name, i), "state": map[string]any{"type": state}}, &sub); err != nil {
				return err
			}
			for j := 0; j < tasksPerRun; j++ {
				stateName := ""
				if i%7 == 6 && j == 0 {
					stateName = "DBT_TEST_FAILED"
				}
				if err := task(sub.ID, fmt.Sprintf("dbt-%d", j), stateName, nil); err != nil {
					return err
				}
			}
			return post("/task_runs/"+subTask.ID+"/set_state", map[string]any{"force": true, "state": map[string]any{
				"type": "COMPLETED", "state_details": map[string]any{"child_flow_run_id": sub.ID}}}, nil)
		})
	}
	return s, g.Wait()
}
