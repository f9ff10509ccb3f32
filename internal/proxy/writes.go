package proxy

import (
	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Job is what a write operation knows of the job running it.
type Job struct {
	// Key is unique to the job and stable across its attempts: Prefect's
	// idempotency_key for flow-run creation, so a retried job never starts a
	// second run. Empty outside a job (no idempotency key is sent).
	Key string
	// Attempt is 1, 2, ... (0 outside a job). An op on attempt 2 or later
	// may find its own earlier, unanswered work done: a delete already gone,
	// a run already cancelling.
	Attempt int
}

// Each write route has a decoder, Decode<Op>(params, body) (P, error), run
// in the api: it validates the path params (by name) and the raw body (may be
// empty) into the job's payload P, or returns an *apperr.Error (422
// FastAPI-style list detail, or the route's specific 4xx). Its work,
// (*Service).Run<Op>(ctx, P, Job), runs in a worker: it returns the exact 200
// body of the Python proxy, or the route's error through translate (a
// retryable one when prefect.Retryable says so). internal/writes binds the
// pairs into typed jobs.

// goneOnRetry reports a 404 on a retried attempt of a delete: the earlier
// attempt most likely deleted it and its answer was lost (the worker died,
// Prefect answered too late), so the job has done what was asked.
func goneOnRetry(j Job, err error) bool {
	return j.Attempt > 1 && prefect.IsNotFound(err)
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
