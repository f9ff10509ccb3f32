package proxy

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// WriteOp is one write route's operation, run as a job by a worker.
type WriteOp struct {
	Name  string // asynq task type, e.g. "deployment:create"; stable forever (jobs in Redis carry it)
	Queue string // jobs.QueueCritical (run/cancel/retry flow runs) or jobs.QueueDefault (deployments, blocks, deletes)
	// Decode validates the HTTP input (path params by name, raw body bytes, may be empty) into the job's payload.
	// It returns *apperr.Error (422 FastAPI-style list detail, or the route's specific 4xx) on bad input.
	Decode func(params map[string]string, body []byte) (payload any, err error)
	// Run executes the job against Prefect. payload is Decode's value re-encoded as JSON. jobID is unique per job
	// and stable across retries (used as Prefect's idempotency_key for flow-run creation). It returns the exact
	// 200 body of the Python proxy, or an error: a retryable one (prefect.Retryable(err) true: connection error,
	// 429, 5xx) or an *apperr.Error with the route's answer (e.g. 400 "failed to create deployment").
	Run func(ctx context.Context, s *Service, payload json.RawMessage, jobID string) (any, error)
}

// Op names (asynq task types). Never rename one: queued jobs carry it.
const (
	OpAirbyteServerCreate     = "block:airbyte-server:create"
	OpAirbyteServerUpdate     = "block:airbyte-server:update"
	OpAirbyteConnectionUpsert = "block:airbyte-connection:upsert"
	OpSecretCreate            = "block:secret:create"
	OpSecretUpsert            = "block:secret:upsert"
	OpBlockDelete             = "block:delete"
	OpDeploymentCreate        = "deployment:create"
	OpDeploymentUpdate        = "deployment:update"
	OpDeploymentEntrypoint    = "deployment:entrypoint"
	OpDeploymentDelete        = "deployment:delete"
	OpDeploymentSetSchedule   = "deployment:set-schedule"
	OpFlowRunCreate           = "flowrun:create"
	OpFlowRunSchedule         = "flowrun:schedule"
	OpFlowRunDelete           = "flowrun:delete"
	OpFlowRunRetry            = "flowrun:retry"
	OpFlowRunCancel           = "flowrun:cancel"
)

// WriteOps lists every write operation, keyed by op Name.
func WriteOps() map[string]WriteOp {
	ops := []WriteOp{
		op(OpAirbyteServerCreate, jobs.QueueDefault, decodeAirbyteServerCreate, (*Service).runAirbyteServerCreate),
		op(OpAirbyteServerUpdate, jobs.QueueDefault, decodeAirbyteServerUpdate, (*Service).runAirbyteServerUpdate),
		op(OpAirbyteConnectionUpsert, jobs.QueueDefault, decodeAirbyteConnection, (*Service).runAirbyteConnection),
		op(OpSecretCreate, jobs.QueueDefault, decodeSecret, (*Service).runSecretCreate),
		op(OpSecretUpsert, jobs.QueueDefault, decodeSecret, (*Service).runSecretUpsert),
		op(OpBlockDelete, jobs.QueueDefault, decodeBlockDelete, (*Service).runBlockDelete),
		op(OpDeploymentCreate, jobs.QueueDefault, decodeDeploymentCreate, (*Service).runDeploymentCreate),
		op(OpDeploymentUpdate, jobs.QueueDefault, decodeDeploymentUpdate, (*Service).runDeploymentUpdate),
		op(OpDeploymentEntrypoint, jobs.QueueDefault, decodeEntrypoint, (*Service).runEntrypoint),
		op(OpDeploymentDelete, jobs.QueueDefault, decodeDeploymentDelete, (*Service).runDeploymentDelete),
		op(OpDeploymentSetSchedule, jobs.QueueDefault, decodeSetSchedule, (*Service).runSetSchedule),
		op(OpFlowRunCreate, jobs.QueueCritical, decodeFlowRunCreate, (*Service).runFlowRunCreate),
		op(OpFlowRunSchedule, jobs.QueueCritical, decodeFlowRunSchedule, (*Service).runFlowRunCreate),
		op(OpFlowRunDelete, jobs.QueueCritical, decodeFlowRunDelete, (*Service).runFlowRunDelete),
		op(OpFlowRunRetry, jobs.QueueCritical, decodeFlowRunRetry, (*Service).runFlowRunRetry),
		op(OpFlowRunCancel, jobs.QueueCritical, decodeFlowRunCancel, (*Service).runFlowRunCancel),
	}
	m := make(map[string]WriteOp, len(ops))
	for _, o := range ops {
		m[o.Name] = o
	}
	return m
}

// op adapts a typed decode/run pair to WriteOp: Decode's value is the job
// payload, and Run gets it back as the same type.
func op[P any](name, queue string, decode func(map[string]string, []byte) (P, error),
	run func(*Service, context.Context, P, string) (any, error)) WriteOp {
	return WriteOp{
		Name:  name,
		Queue: queue,
		Decode: func(params map[string]string, body []byte) (any, error) {
			p, err := decode(params, body)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
		Run: func(ctx context.Context, s *Service, raw json.RawMessage, jobID string) (any, error) {
			var p P
			// UseNumber: parameters pass through to Prefect with their
			// numbers intact (Python ints have no 2^53 limit).
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&p); err != nil {
				// A payload we wrote ourselves does not decode: a bug or a
				// job from an incompatible version. Retrying cannot help.
				return nil, apperr.Wrap(apperr.Internal, err, "invalid job payload for %s", name)
			}
			return run(s, ctx, p, jobID)
		},
	}
}

// goneOnRetry reports a 404 on a retried attempt of a delete: the earlier
// attempt most likely deleted it and its answer was lost (the worker died,
// Prefect answered too late), so the job has done what was asked.
func goneOnRetry(ctx context.Context, err error) bool {
	return jobs.Attempt(ctx) > 1 && prefect.IsNotFound(err)
}

// notFoundText is what Prefect answers for a path id that is not a UUID
// (no `{id:uuid}` route matches), i.e. what routes 11 and 30 passed on.
const notFoundText = `{"detail":"Not Found"}`

// badRequest is the route's fixed 400.
func badRequest(format string, args ...any) *apperr.Error {
	return apperr.New(apperr.BadRequest, format, args...)
}

// successBody is the Python proxy's {"success": 1}.
func successBody() map[string]int { return map[string]int{"success": 1} }
