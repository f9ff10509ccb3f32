package jobs

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Op is one write operation as the job runtime sees it. internal/worker builds
// these from proxy.WriteOps(); tests build their own.
type Op struct {
	Name  string // asynq task type; stable forever (jobs in Redis carry it)
	Queue string // QueueCritical or QueueDefault
	// Decode validates the HTTP input into the job's payload (runs in the api).
	Decode func(params map[string]string, body []byte) (any, error)
	// Run executes the job (runs in a worker). jobID is stable across the
	// job's attempts and unique to the job (for an Idempotency-Key job it is
	// not the task id: see envelope.RunKey). It returns the route's 200 body,
	// a retryable error (prefect.Retryable) or an *apperr.Error to replay.
	Run func(ctx context.Context, payload json.RawMessage, jobID string) (any, error)
}

type attemptKey struct{}

// WithAttempt records which attempt of its job ctx belongs to (the Runner
// sets it; tests may too).
func WithAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, n)
}

// Attempt is the attempt (1, 2, ...) ctx's job is on; 0 outside a job. An op
// on attempt 2 or later may find its own earlier, unanswered work done: a
// delete already gone, a run already cancelling.
func Attempt(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey{}).(int)
	return n
}

// State is a job's public state (GET /jobs/{id}).
type State string

const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateRetrying  State = "retrying"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
)

// envelope is what a task's payload holds, sealed.
type envelope struct {
	Payload     json.RawMessage `json:"p"`
	Fingerprint string          `json:"f"` // sha256 of op name + payload: idempotency check
	CreatedAt   time.Time       `json:"c"`
	// RunKey is what Op.Run gets as its job id: the task id, except for an
	// Idempotency-Key job, whose task id comes back when the key is reused
	// after JOB_RETENTION; a fresh RunKey keeps Prefect's idempotency_key
	// from answering that new job with the old job's flow run.
	RunKey string `json:"k,omitempty"`
	// RequestID is the api request's X-Request-Id: the worker's log lines of
	// the job carry it, so a request can be followed into the worker.
	RequestID string `json:"r,omitempty"`
}

// outcome is what a worker writes as the task's result, sealed: the HTTP
// answer the route gives for this job (200 + body, or the failure replayed).
type outcome struct {
	Final   bool            `json:"final"` // false: a failed attempt that will be retried
	Status  int             `json:"status"`
	Body    json.RawMessage `json:"body"`
	Attempt int             `json:"attempt"`
	At      time.Time       `json:"at"`
}

// Job is a job as the api sees it.
type Job struct {
	ID          string
	Type        string
	Queue       string
	State       State
	Attempts    int
	CreatedAt   time.Time
	CompletedAt time.Time // zero until succeeded or failed
	// Status and Body are the HTTP answer once done (200 + result, or the
	// failure replayed). While retrying they hold the last attempt's failure.
	Status int
	Body   json.RawMessage
}

// Done reports whether the job has succeeded or failed for good.
func (j *Job) Done() bool { return j.State == StateSucceeded || j.State == StateFailed }

// View is the JSON shape of GET /jobs/{id}.
type View struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	State       State           `json:"state"`
	Attempts    int             `json:"attempts"`
	Result      json.RawMessage `json:"result"`
	Error       *ErrorView      `json:"error"`
	CreatedAt   *time.Time      `json:"created_at"`
	CompletedAt *time.Time      `json:"completed_at"`
}

// ErrorView is a failed job's (or failed attempt's) HTTP answer.
type ErrorView struct {
	Status int `json:"status"`
	Detail any `json:"detail"`
}

// View renders the job for GET /jobs/{id}.
func (j *Job) View() View {
	v := View{ID: j.ID, Type: j.Type, State: j.State, Attempts: j.Attempts, Result: json.RawMessage("null")}
	if !j.CreatedAt.IsZero() {
		t := j.CreatedAt.UTC()
		v.CreatedAt = &t
	}
	if !j.CompletedAt.IsZero() {
		t := j.CompletedAt.UTC()
		v.CompletedAt = &t
	}
	switch {
	case j.State == StateSucceeded && j.Status == http.StatusOK:
		if len(j.Body) > 0 {
			v.Result = j.Body
		}
	case j.Status != 0:
		var body struct {
			Detail any `json:"detail"`
		}
		_ = json.Unmarshal(j.Body, &body)
		v.Error = &ErrorView{Status: j.Status, Detail: body.Detail}
	}
	return v
}
