package httpapi

import (
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// filterDeployments is route 25, POST /proxy/deployments/filter, body
// DeploymentFetch {org_slug: str, deployment_ids: list[str] | null}: both keys
// required. A null deployment_ids is the Python proxy's 400 (its service
// raised TypeError), not a 422.
func filterDeployments(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		b, err := readModel(c)
		if err != nil {
			return nil, err
		}
		org := b.Str("org_slug", true)
		ids, idsNull := b.StrList("deployment_ids", true, true)
		if err := b.Err(); err != nil {
			return nil, err
		}
		if idsNull {
			return nil, apperr.New(apperr.BadRequest, "failed to filter deployments")
		}
		return s.FilterDeployments(c.Request.Context(), org, ids)
	}
}

// getDeployment is route 29, GET /proxy/deployments/{deployment_id}.
func getDeployment(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		return s.Deployment(c.Request.Context(), c.Param("deployment_id"))
	}
}

// filterWorkers is route 37, POST /proxy/workers/filter/, body
// FilterPrefectWorkers {work_queue_names: list[str] = [], work_pool_names:
// list[str] = [], status: str = "ONLINE"} → {"count": n}. work_queue_names is
// validated but cannot narrow the count (Prefect does not tie workers to
// queues).
func filterWorkers(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		b, err := readModel(c)
		if err != nil {
			return nil, err
		}
		b.StrList("work_queue_names", false, false)
		pools, _ := b.StrList("work_pool_names", false, false)
		status := "ONLINE"
		if b.Has("status") {
			status = strings.ToUpper(b.Str("status", false))
			if b.Err() == nil && status != "ONLINE" && status != "OFFLINE" {
				b.Fail("status", "enum", "Input should be 'ONLINE' or 'OFFLINE'")
			}
		}
		if err := b.Err(); err != nil {
			return nil, err
		}
		n, err := s.CountWorkers(c.Request.Context(), pools, status)
		if err != nil {
			return nil, err
		}
		return gin.H{"count": n}, nil
	}
}

// inProcessRunGone answers routes 12 and 13 (dbt core and shell runs inside
// the proxy process). The Python proxy ran arbitrary commands there; this
// proxy never runs a command, and Django no longer calls these routes.
func inProcessRunGone() handler {
	return func(c *gin.Context) (any, error) {
		return nil, apperr.New(apperr.NotImplemented,
			"running dbt or shell commands inside the proxy is not supported: create a deployment "+
				"(POST /proxy/v1/deployments/) and run it (POST /proxy/deployments/{deployment_id}/flow_run)")
	}
}
