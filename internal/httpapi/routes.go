package httpapi

import (
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/writes"
)

// addRoutes is the whole HTTP surface of the api. Paths are written as the
// Python proxy declares them; the trailing slash is optional on all of them
// (see stripTrailingSlash), and Gin matches the slash-less form.
func addRoutes(r *gin.Engine, d Deps) {
	// Operations.
	r.GET("/livez", livez())
	r.GET("/readyz", readyz(d.Ready, d.Checks))
	r.GET("/healthz", readyz(d.Ready, d.Checks))
	if d.Metrics != nil {
		r.GET("/metrics", gin.WrapH(obs.RequireToken(d.Config.MetricsToken, promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{}))))
	}
	r.GET("/openapi.json", openAPI())
	r.GET("/docs", docsPage())
	r.GET("/docs/assets/*file", docsAssets())

	p := r.Group("/proxy", requireToken(d.Config.ProxyAPIToken))
	p.GET("/prefect/version", h(prefectVersion(d.Proxy)))

	// --- Blocks, deployments, workers: reads ---
	p.GET("/blocks/airbyte/server/:blockname", h(airbyteServerBlockID(d.Proxy)))
	p.GET("/blocks/airbyte/server/block/:blockname", h(airbyteServerBlock(d.Proxy)))
	p.GET("/blocks/secret/:blockname/contents", h(secretBlockContents(d.Proxy, d.Config.ProxyAPIToken)))
	p.GET("/blocks/secret/:blockname", h(secretBlock(d.Proxy)))
	p.POST("/deployments/filter", h(filterDeployments(d.Proxy)))
	p.GET("/deployments/:deployment_id", h(getDeployment(d.Proxy)))
	p.POST("/workers/filter", h(filterWorkers(d.Proxy)))
	p.POST("/v1/flows/dbtcore/run", h(inProcessRunGone()))
	p.POST("/flows/shell/run", h(inProcessRunGone()))

	// --- Flow runs: reads ---
	p.GET("/v1/deployments/get_scheduled_flow_runs", h(scheduledFlowRuns(d.Proxy)))
	p.POST("/flow_run", h(flowRunByName(d.Proxy)))
	p.GET("/flow_runs", h(flowRunsByDeployment(d.Proxy)))
	p.POST("/flow_runs/late", h(lateFlowRuns(d.Proxy)))
	p.GET("/flow_runs/:flow_run_id", h(flowRun(d.Proxy, d.RunCache)))
	p.GET("/flow_runs/:flow_run_id/poll", h(pollFlowRun(d.Proxy, d.RunCache)))
	p.GET("/flow_runs/logs/:flow_run_id", h(flowRunLogs(d.Proxy, d.RunCache)))
	p.GET("/flow_runs/v1/logs/:flow_run_id", h(flowRunLogsByNode(d.Proxy, d.RunCache)))
	p.GET("/flow_runs/graph/:flow_run_id", h(flowRunGraph(d.Proxy, d.RunCache)))
	p.GET("/flow_runs/long-running/:nhours", h(longRunningFlowRuns(d.Proxy)))

	// --- Writes (jobs) ---
	// Each write is a job (internal/jobs): decode, enqueue, wait up to
	// JOB_WAIT_TIMEOUT, answer as the Python proxy would (writes.go).
	wr := writeRoutes{jobs: d.Jobs, wait: d.Config.JobWaitTimeout}
	ops := d.Ops
	if ops == nil {
		ops = &writes.Ops{} // no job queue: every write route answers 503
	}
	p.POST("/blocks/airbyte/server", write(wr, ops.AirbyteServerCreate))
	p.PUT("/blocks/airbyte/server", write(wr, ops.AirbyteServerUpdate))
	p.PUT("/blocks/airbyte/connection", write(wr, ops.AirbyteConnectionUpsert))
	p.POST("/blocks/secret", write(wr, ops.SecretCreate))
	p.PUT("/blocks/secret", write(wr, ops.SecretUpsert))
	r.DELETE("/delete-a-block/:block_id", requireToken(d.Config.ProxyAPIToken), write(wr, ops.BlockDelete))
	p.POST("/v1/deployments", write(wr, ops.DeploymentCreate))
	p.PUT("/v1/deployments/:deployment_id", write(wr, ops.DeploymentUpdate))
	p.PATCH("/v1/deployments/:deployment_id/entrypoint", write(wr, ops.DeploymentEntrypoint))
	p.DELETE("/deployments/:deployment_id", write(wr, ops.DeploymentDelete))
	p.POST("/deployments/:deployment_id/set_schedule/:status", write(wr, ops.DeploymentSetSchedule))
	p.POST("/deployments/:deployment_id/flow_run", write(wr, ops.FlowRunCreate))
	p.POST("/deployments/:deployment_id/flow_run/schedule", write(wr, ops.FlowRunSchedule))
	p.DELETE("/flow_runs/:flow_run_id", write(wr, ops.FlowRunDelete))
	p.POST("/flow_runs/:flow_run_id/retry", write(wr, ops.FlowRunRetry))
	p.POST("/flow_runs/:flow_run_id/set_state", write(wr, ops.FlowRunCancel))

	// --- Job API ---
	r.GET("/jobs/:id", requireToken(d.Config.ProxyAPIToken), h(getJob(d.Jobs)))
	// asynqmon (queues, retries, archived = failed jobs), operators only.
	if d.Monitoring != nil {
		mon := []gin.HandlerFunc{adminOnly(d.Config.AdminToken), gin.WrapH(d.Monitoring)}
		r.Any("/monitoring", mon...)
		r.Any("/monitoring/*path", mon...)
	}

	// --- Relay ---
	// Prefect's webhook (same path as Django's, so only the host changes);
	// its own X-Notification-Key check, no bearer token.
	r.POST("/webhooks/v1/notification", relayIngest(d.Relay))
	ra := r.Group("/admin/relay", adminOnly(d.Config.AdminToken))
	ra.GET("/dead-letters", h(relayDeadLetters(d.Relay)))
	ra.POST("/dead-letters/replay", h(relayReplayAll(d.Relay)))
	ra.POST("/dead-letters/:id/replay", h(relayReplay(d.Relay)))
}
