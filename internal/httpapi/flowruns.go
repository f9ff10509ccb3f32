package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// Flow-run read routes (routes 17–22, 26–28, 35). Handlers only
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
		var q queryErrs
		dep := q.required(c, "deployment_id")
		if err := q.err(); err != nil {
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
		b, err := readBodyFields(c)
		if err != nil {
			return nil, err
		}
		name := b.str("name", true)
		if err := b.err(); err != nil {
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
		var q queryErrs
		dep := q.required(c, "deployment_id")
		limit := q.nonNegInt(c, "limit", 0)
		start, _ := queryDateTime(c, "start_time_gt")
		if err := q.err(); err != nil {
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
		b, err := readBodyFields(c)
		if err != nil {
			return nil, err
		}
		f := proxy.LateFilter{
			DeploymentID:    bodyNullableStr(b, "deployment_id"),
			WorkPoolName:    bodyNullableStr(b, "work_pool_name"),
			WorkQueueName:   bodyNullableStr(b, "work_queue_name"),
			Limit:           bodyInt(b, "limit", 1),
			BeforeStartTime: bodyNullableDateTime(b, "before_start_time"),
			AfterStartTime:  bodyNullableDateTime(b, "after_start_time"),
		}
		f.ExcludeFlowRunIDs, _ = b.strList("exclude_flow_run_ids", false, false)
		if err := b.err(); err != nil {
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
func flowRun(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		raw, err := s.FlowRun(c.Request.Context(), c.Param("flow_run_id"))
		if err != nil {
			return nil, err
		}
		return writeRawJSON(c, raw)
	}
}

// pollFlowRun is route 22, GET /proxy/flow_runs/{flow_run_id}/poll:
// Prefect's flow run JSON, passed through untouched.
func pollFlowRun(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		raw, err := s.FlowRunPoll(c.Request.Context(), c.Param("flow_run_id"))
		if err != nil {
			return nil, err
		}
		return writeRawJSON(c, raw)
	}
}

// flowRunLogs is route 26, GET /proxy/flow_runs/logs/{flow_run_id}
// [?task_run_id=][&limit=0][&offset=0] → {"offset", "logs": [{level, timestamp, message}]}.
func flowRunLogs(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		var q queryErrs
		task, _ := lastQuery(c, "task_run_id")
		limit := q.nonNegInt(c, "limit", 0)
		offset := q.nonNegInt(c, "offset", 0)
		if err := q.err(); err != nil {
			return nil, err
		}
		return s.FlowRunLogs(c.Request.Context(), c.Param("flow_run_id"), task, limit, offset)
	}
}

// flowRunLogsByNode is route 27, GET /proxy/flow_runs/v1/logs/{flow_run_id}.
func flowRunLogsByNode(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		return s.FlowRunLogsByNode(c.Request.Context(), c.Param("flow_run_id"))
	}
}

// flowRunGraph is route 28, GET /proxy/flow_runs/graph/{flow_run_id}.
func flowRunGraph(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		return s.FlowRunGraph(c.Request.Context(), c.Param("flow_run_id"))
	}
}

// maxHours bounds nhours of route 35 (about 114 years).
const maxHours = 1_000_000

// longRunningFlowRuns is route 35, GET /proxy/flow_runs/long-running/{nhours}
// [?start_time_str=<ISO-8601>] → {"flow_runs": [<Prefect flow run>...]}: runs
// RUNNING since before start_time_str (default now) minus nhours. A naive
// start_time_str is taken as UTC; an unparsable one is a 422 (was a 500).
func longRunningFlowRuns(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		var q queryErrs
		nhours, fe := parseIntParam(c.Param("nhours"), "path", "nhours")
		switch {
		case fe != nil:
			q = append(q, *fe)
		case nhours > maxHours || nhours < -maxHours:
			// Beyond this the date overflows (Python raised OverflowError, a 500).
			q = append(q, apperr.Field("less_than_equal",
				fmt.Sprintf("Input should be between -%d and %d", maxHours, maxHours), "path", "nhours"))
		}
		since := time.Now()
		if v, ok := queryDateTime(c, "start_time_str"); ok && v != "" {
			t, ok := parseISODateTime(v)
			if !ok {
				q = append(q, apperr.Field("datetime_parsing",
					"Input should be a valid ISO-8601 datetime", "query", "start_time_str"))
			}
			since = t
		}
		if err := q.err(); err != nil {
			return nil, err
		}
		runs, err := s.LongRunningFlowRuns(c.Request.Context(), nhours, since)
		if err != nil {
			return nil, err
		}
		return gin.H{"flow_runs": runs}, nil
	}
}
