package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
)

// Flow-run read routes (routes 17–22, 26–28 and 35 of the Python proxy). Handlers only
// parse and validate; proxy.Service does the Prefect work.

// writeRawJSON answers 200 with Prefect's JSON as is (no re-encoding).
func writeRawJSON(c *gin.Context, raw json.RawMessage) (any, error) {
	c.Data(http.StatusOK, "application/json; charset=utf-8", raw)
	return nil, nil
}

// scheduledFlowRuns is route 17, GET /proxy/v1/deployments/get_scheduled_flow_runs
// ?deployment_id= → {"flow_runs": [<Prefect flow run>...]}.
func scheduledFlowRuns(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		q := query(c)
		dep := q.Required("deployment_id")
		if err := q.Err(); err != nil {
			return nil, err
		}
		runs, err := s.ScheduledFlowRuns(c.Request.Context(), dep)
		if err != nil {
			return nil, err
		}
		return gin.H{"flow_runs": runs}, nil
	}
}

// flowRunByName is route 18, POST /proxy/flow_run/ {"name": str} →
// {"flow_run": <Prefect flow run + "status">}; 400 "no such flow run".
func flowRunByName(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		b, err := readModel(c)
		if err != nil {
			return nil, err
		}
		name := b.Str("name", true)
		if err := b.Err(); err != nil {
			return nil, err
		}
		run, err := s.FlowRunByName(c.Request.Context(), name)
		if err != nil {
			return nil, err
		}
		return gin.H{"flow_run": run}, nil
	}
}

// flowRunsByDeployment is route 19, GET /proxy/flow_runs?deployment_id=
// [&limit=0][&start_time_gt=] → {"flow_runs": [{id, name, tags, startTime,
// expectedStartTime, totalRunTime, status, state_name}]}. limit 0 = all.
func flowRunsByDeployment(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		q := query(c)
		dep := q.Required("deployment_id")
		limit := q.NonNegInt("limit", 0)
		start, _ := q.DateTime("start_time_gt")
		if err := q.Err(); err != nil {
			return nil, err
		}
		runs, err := s.FlowRunsByDeployment(c.Request.Context(), dep, limit, start)
		if err != nil {
			return nil, err
		}
		return gin.H{"flow_runs": runs}, nil
	}
}

// lateFlowRuns is route 20, POST /proxy/flow_runs/late, body
// FilterLateFlowRuns → {"flow_runs": [...]} (camelCase rows).
func lateFlowRuns(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		b, err := readModel(c)
		if err != nil {
			return nil, err
		}
		f := proxy.LateFilter{
			DeploymentID:    deref(b.OptStr("deployment_id")),
			WorkPoolName:    deref(b.OptStr("work_pool_name")),
			WorkQueueName:   deref(b.OptStr("work_queue_name")),
			Limit:           int(b.IntOr("limit", 1)),
			BeforeStartTime: b.OptDatetime("before_start_time"),
			AfterStartTime:  b.OptDatetime("after_start_time"),
		}
		f.ExcludeFlowRunIDs, _ = b.StrList("exclude_flow_run_ids", false, false)
		if err := b.Err(); err != nil {
			return nil, err
		}
		runs, err := s.LateFlowRuns(c.Request.Context(), f)
		if err != nil {
			return nil, err
		}
		return gin.H{"flow_runs": runs}, nil
	}
}

// flowRun is route 21, GET /proxy/flow_runs/{flow_run_id}: Prefect's flow run
// plus "status" and "state_name" (DBT_TEST_FAILED-aware).
func flowRun(s *proxy.Service, rc *runcache.Cache) handler {
	return func(c *gin.Context) (any, error) {
		id := c.Param("flow_run_id")
		return runAnswer(c, rc, runcache.FlowRun, id, "", func(ctx context.Context) (any, error) {
			return s.FlowRun(ctx, id)
		})
	}
}

// pollFlowRun is route 22, GET /proxy/flow_runs/{flow_run_id}/poll:
// Prefect's flow run JSON, passed through untouched.
func pollFlowRun(s *proxy.Service, rc *runcache.Cache) handler {
	return func(c *gin.Context) (any, error) {
		id := c.Param("flow_run_id")
		return runAnswer(c, rc, runcache.Poll, id, "", func(ctx context.Context) (any, error) {
			return s.FlowRunPoll(ctx, id)
		})
	}
}

// flowRunLogs is route 26, GET /proxy/flow_runs/logs/{flow_run_id}
// [?task_run_id=][&limit=0][&offset=0] → {"offset", "logs": [{level, timestamp, message}]}.
func flowRunLogs(s *proxy.Service, rc *runcache.Cache) handler {
	return func(c *gin.Context) (any, error) {
		q := query(c)
		task, _ := q.Last("task_run_id")
		limit := q.NonNegInt("limit", 0)
		offset := q.NonNegInt("offset", 0)
		if err := q.Err(); err != nil {
			return nil, err
		}
		id := c.Param("flow_run_id")
		variant := fmt.Sprintf("%s|%d|%d", strings.ToLower(task), limit, offset)
		return runAnswer(c, rc, runcache.Logs, id, variant, func(ctx context.Context) (any, error) {
			return s.FlowRunLogs(ctx, id, task, int(limit), int(offset))
		})
	}
}

// flowRunLogsByNode is route 27, GET /proxy/flow_runs/v1/logs/{flow_run_id}.
func flowRunLogsByNode(s *proxy.Service, rc *runcache.Cache) handler {
	return func(c *gin.Context) (any, error) {
		id := c.Param("flow_run_id")
		return runAnswer(c, rc, runcache.LogsByNode, id, "", func(ctx context.Context) (any, error) {
			return s.FlowRunLogsByNode(ctx, id)
		})
	}
}

// flowRunGraph is route 28, GET /proxy/flow_runs/graph/{flow_run_id}.
func flowRunGraph(s *proxy.Service, rc *runcache.Cache) handler {
	return func(c *gin.Context) (any, error) {
		id := c.Param("flow_run_id")
		return runAnswer(c, rc, runcache.Graph, id, "", func(ctx context.Context) (any, error) {
			return s.FlowRunGraph(ctx, id)
		})
	}
}

// runAnswer answers a read of one flow run through the terminal-run cache
// (rc nil: straight from read). The cache holds the answer's bytes exactly
// as written here, so a cached answer is the uncached one byte for byte:
// Prefect's raw JSON as is, anything else as c.JSON would encode it.
func runAnswer(c *gin.Context, rc *runcache.Cache, kind runcache.Kind, id, variant string, read func(context.Context) (any, error)) (any, error) {
	body, err := rc.Answer(c.Request.Context(), kind, id, variant, func(ctx context.Context) ([]byte, error) {
		v, err := read(ctx)
		if err != nil {
			return nil, err
		}
		if raw, ok := v.(json.RawMessage); ok {
			return raw, nil
		}
		return json.Marshal(v)
	})
	if err != nil {
		return nil, err
	}
	return writeRawJSON(c, body)
}

// maxHours bounds nhours of route 35 (about 114 years).
const maxHours = 1_000_000

// longRunningFlowRuns is route 35, GET /proxy/flow_runs/long-running/{nhours}
// [?start_time_str=<ISO-8601>] → {"flow_runs": [<Prefect flow run>...]}: runs
// RUNNING since before start_time_str (default now) minus nhours. A naive
// start_time_str is taken as UTC; an unparsable one is a 422 (was a 500).
func longRunningFlowRuns(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		q := query(c)
		nhours, ok := q.PathInt("nhours", c.Param("nhours"))
		if ok && (nhours > maxHours || nhours < -maxHours) {
			// Beyond this the date overflows (Python raised OverflowError, a 500).
			q.Fail("less_than_equal", fmt.Sprintf("Input should be between -%d and %d", maxHours, maxHours), "path", "nhours")
		}
		since := time.Now()
		if v, ok := q.DateTime("start_time_str"); ok && v != "" {
			// A plain str parsed by datetime.fromisoformat in the Python
			// proxy: ISO-8601 only, no Unix time.
			t, ok := validate.ISO(v)
			if !ok {
				q.Fail("datetime_parsing", "Input should be a valid ISO-8601 datetime", "query", "start_time_str")
			}
			since = t
		}
		if err := q.Err(); err != nil {
			return nil, err
		}
		runs, err := s.LongRunningFlowRuns(c.Request.Context(), int(nhours), since)
		if err != nil {
			return nil, err
		}
		return gin.H{"flow_runs": runs}, nil
	}
}

// deref is a `str | None = None` field's value, "" when absent or null.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
