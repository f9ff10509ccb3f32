// Package writes binds the proxy's write operations to the job runtime: each
// op is one typed jobs.Op value — kind, payload type, decoder, queue, retry
// policy and work — that the api's route and the worker both refer to.
package writes

import (
	"context"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// Ops are the write operations, one field per write route.
type Ops struct {
	AirbyteServerCreate     jobs.Op[proxy.AirbyteServerCreatePayload]
	AirbyteServerUpdate     jobs.Op[proxy.AirbyteServerUpdatePayload]
	AirbyteConnectionUpsert jobs.Op[proxy.AirbyteConnectionPayload]
	SecretCreate            jobs.Op[proxy.SecretPayload]
	SecretUpsert            jobs.Op[proxy.SecretPayload]
	BlockDelete             jobs.Op[proxy.BlockDeletePayload]
	DeploymentCreate        jobs.Op[proxy.DeploymentCreatePayload]
	DeploymentUpdate        jobs.Op[proxy.DeploymentUpdatePayload]
	DeploymentEntrypoint    jobs.Op[proxy.EntrypointPayload]
	DeploymentDelete        jobs.Op[proxy.DeploymentDeletePayload]
	DeploymentSetSchedule   jobs.Op[proxy.SetSchedulePayload]
	FlowRunCreate           jobs.Op[proxy.FlowRunCreatePayload]
	FlowRunSchedule         jobs.Op[proxy.FlowRunCreatePayload]
	FlowRunDelete           jobs.Op[proxy.FlowRunPayload]
	FlowRunRetry            jobs.Op[proxy.FlowRunRetryPayload]
	FlowRunCancel           jobs.Op[proxy.FlowRunCancelPayload]
}

// New binds every write operation to svc. The kinds are asynq task types:
// never rename one, queued jobs carry it.
func New(svc *proxy.Service) *Ops {
	const def, crit = jobs.QueueDefault, jobs.QueueCritical
	return &Ops{
		AirbyteServerCreate:     op("block:airbyte-server:create", def, proxy.DecodeAirbyteServerCreate, svc.RunAirbyteServerCreate),
		AirbyteServerUpdate:     op("block:airbyte-server:update", def, proxy.DecodeAirbyteServerUpdate, svc.RunAirbyteServerUpdate),
		AirbyteConnectionUpsert: op("block:airbyte-connection:upsert", def, proxy.DecodeAirbyteConnection, svc.RunAirbyteConnection),
		SecretCreate:            op("block:secret:create", def, proxy.DecodeSecret, svc.RunSecretCreate),
		SecretUpsert:            op("block:secret:upsert", def, proxy.DecodeSecret, svc.RunSecretUpsert),
		BlockDelete:             op("block:delete", def, proxy.DecodeBlockDelete, svc.RunBlockDelete),
		DeploymentCreate:        op("deployment:create", def, proxy.DecodeDeploymentCreate, svc.RunDeploymentCreate),
		DeploymentUpdate:        op("deployment:update", def, proxy.DecodeDeploymentUpdate, svc.RunDeploymentUpdate),
		DeploymentEntrypoint:    op("deployment:entrypoint", def, proxy.DecodeEntrypoint, svc.RunEntrypoint),
		DeploymentDelete:        op("deployment:delete", def, proxy.DecodeDeploymentDelete, svc.RunDeploymentDelete),
		DeploymentSetSchedule:   op("deployment:set-schedule", def, proxy.DecodeSetSchedule, svc.RunSetSchedule),
		FlowRunCreate:           op("flowrun:create", crit, proxy.DecodeFlowRunCreate, svc.RunFlowRunCreate),
		FlowRunSchedule:         op("flowrun:schedule", crit, proxy.DecodeFlowRunSchedule, svc.RunFlowRunCreate),
		FlowRunDelete:           op("flowrun:delete", crit, proxy.DecodeFlowRunDelete, svc.RunFlowRunDelete),
		FlowRunRetry:            op("flowrun:retry", crit, proxy.DecodeFlowRunRetry, svc.RunFlowRunRetry),
		FlowRunCancel:           op("flowrun:cancel", crit, proxy.DecodeFlowRunCancel, svc.RunFlowRunCancel),
	}
}

// Registry registers every op, for the jobs client (api) and runner (worker).
func (o *Ops) Registry() *jobs.Registry {
	r := jobs.NewRegistry()
	jobs.Register(r, o.AirbyteServerCreate)
	jobs.Register(r, o.AirbyteServerUpdate)
	jobs.Register(r, o.AirbyteConnectionUpsert)
	jobs.Register(r, o.SecretCreate)
	jobs.Register(r, o.SecretUpsert)
	jobs.Register(r, o.BlockDelete)
	jobs.Register(r, o.DeploymentCreate)
	jobs.Register(r, o.DeploymentUpdate)
	jobs.Register(r, o.DeploymentEntrypoint)
	jobs.Register(r, o.DeploymentDelete)
	jobs.Register(r, o.DeploymentSetSchedule)
	jobs.Register(r, o.FlowRunCreate)
	jobs.Register(r, o.FlowRunSchedule)
	jobs.Register(r, o.FlowRunDelete)
	jobs.Register(r, o.FlowRunRetry)
	jobs.Register(r, o.FlowRunCancel)
	return r
}

// op binds a decoder and a Service method into a typed job. Every write has
// the same retry policy: what Prefect may answer differently next time
// (unreachable, 429, 5xx) is retried with the jobs' backoff; any other
// failure is the route's answer at once.
func op[P any](kind, queue string, decode func(map[string]string, []byte) (P, error),
	run func(context.Context, P, proxy.Job) (any, error)) jobs.Op[P] {
	return jobs.Op[P]{
		Kind:   kind,
		Queue:  queue,
		Decode: decode,
		Work: func(ctx context.Context, p P, r jobs.Run) (any, error) {
			return run(ctx, p, proxy.Job{Key: r.Key, Attempt: r.Attempt})
		},
		Retry: jobs.RetryPolicy{Retryable: prefect.Retryable},
	}
}
