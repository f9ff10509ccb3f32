package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// Op is one write operation as a typed job, River's shape: the value says
// everything about itself — its kind, its payload type P, the decoder the
// api runs, its queue, its retry policy and the work a worker runs. A route
// and a worker refer to the same value, so an op without one of them does not
// compile. Register it in a Registry.
type Op[P any] struct {
	Kind  string // asynq task type; stable forever (jobs in Redis carry it)
	Queue string // QueueCritical or QueueDefault
	// Decode validates the HTTP input (path params by name, raw body, may be
	// empty) into the payload (runs in the api). It returns an
	// *apperr.Error on bad input.
	Decode func(params map[string]string, body []byte) (P, error)
	// Work executes the job (runs in a worker). It returns the route's 200
	// body, or an error: Retry decides whether another attempt follows, and
	// an *apperr.Error is the answer the route replays.
	Work  func(ctx context.Context, p P, r Run) (any, error)
	Retry RetryPolicy
}

// Run is what Work knows of the job running it.
type Run struct {
	// Key is unique to the job and stable across its attempts. It is the
	// task id, except for an Idempotency-Key job (see envelope.RunKey).
	Key string
	// Attempt is 1, 2, ...
	Attempt int
}

// RetryPolicy says which failures are tried again, and after how long.
type RetryPolicy struct {
	// Retryable reports whether a failed attempt is tried again (while
	// attempts remain); nil: never.
	Retryable func(error) bool
	// Delay is the wait before the next attempt, given the retries already
	// made; nil: RetryDelay (write jobs' backoff).
	Delay func(retried int) time.Duration
}

// kind, queue, work, retryable and delay make Op[P] a registered op. Its
// payload travels as JSON only because it is sealed into Redis.
func (o Op[P]) kind() string  { return o.Kind }
func (o Op[P]) queue() string { return o.Queue }

func (o Op[P]) work(ctx context.Context, payload []byte, r Run) (any, error) {
	var p P
	// UseNumber: parameters pass through to Prefect with their numbers
	// intact (Python ints have no 2^53 limit).
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		// A payload we wrote ourselves does not decode: a bug or a job from
		// an incompatible version. Retrying cannot help.
		return nil, apperr.Wrap(apperr.Internal, err, "invalid job payload for %s", o.Kind)
	}
	return o.Work(ctx, p, r)
}

func (o Op[P]) retryable(err error) bool { return o.Retry.Retryable != nil && o.Retry.Retryable(err) }

func (o Op[P]) delay(n int, err error, t *asynq.Task) time.Duration {
	if o.Retry.Delay != nil {
		return o.Retry.Delay(n)
	}
	return RetryDelay(n, err, t)
}

// registered is an Op of any payload type.
type registered interface {
	kind() string
	queue() string
	work(ctx context.Context, payload []byte, r Run) (any, error)
	retryable(err error) bool
	delay(n int, err error, t *asynq.Task) time.Duration
}

// Registry holds the ops a process knows: the api enqueues them and reads
// their jobs, a worker runs them.
type Registry struct {
	ops    map[string]registered
	queues []string // queues holding write jobs, most urgent first
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{ops: map[string]registered{}} }

// Register adds op to r. A kind registered twice, or an op without work, is
// a programming error and panics at start, as http.ServeMux does.
func Register[P any](r *Registry, op Op[P]) {
	if _, dup := r.ops[op.Kind]; dup || op.Kind == "" || op.Work == nil {
		panic(fmt.Sprintf("jobs: op %q registered twice, or without a kind or work", op.Kind))
	}
	r.ops[op.Kind] = op
	if !slices.Contains(r.queues, op.Queue) {
		r.queues = append(r.queues, op.Queue)
		// Critical first: run/cancel flow-run jobs are the ones most polled.
		w := QueueWeights()
		slices.SortStableFunc(r.queues, func(a, b string) int { return w[b] - w[a] })
	}
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
	// RunKey is what Op.Work gets as Run.Key: the task id, except for an
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
