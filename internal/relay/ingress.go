package relay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// Enqueuer is the part of asynq.Client the relay uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Ingress accepts notifications from Prefect and queues them durably.
type Ingress struct {
	Queue    Enqueuer
	Key      string // RELAY_INBOUND_KEY
	States   StateFilter
	MaxRetry int // MaxRetries(RELAY_RETRY_SCHEDULE)
	Log      logrus.FieldLogger
	Metrics  *Metrics
	Now      func() time.Time
}

// Outcome is what the ingress did with a notification.
type Outcome struct {
	Status    string `json:"status"` // queued, duplicate, ignored
	FlowRunID string `json:"flow_run_id"`
	State     string `json:"state,omitempty"`
	WebhookID string `json:"webhook_id,omitempty"`
}

// KeyMatches compares the presented X-Notification-Key in constant time
// (hashing first hides the key's length too). No configured key matches
// nothing: an open relay would let anyone trigger Django's failure e-mails.
func (i *Ingress) KeyMatches(got string) bool {
	if i.Key == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(i.Key))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// Accept parses body and queues it. A *ParseError means the body is unusable;
// any other error means the queue (Redis) refused it.
func (i *Ingress) Accept(ctx context.Context, body []byte) (Outcome, error) {
	n, err := Parse(body)
	if err != nil {
		i.Metrics.in("unparseable")
		return Outcome{}, err
	}
	out := Outcome{FlowRunID: n.FlowRunID, State: n.State}
	if !i.States.Allows(n.State) {
		i.Metrics.in("ignored")
		out.Status = "ignored"
		return out, nil
	}
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	n.Received = now().UTC()
	queued, err := Enqueue(ctx, i.Queue, n, i.MaxRetry)
	if err != nil {
		i.Metrics.in("enqueue_failed")
		return out, err
	}
	if n.Complete() {
		out.WebhookID = WebhookID(n)
	}
	out.Status = "queued"
	if !queued {
		out.Status = "duplicate"
		i.Metrics.in("duplicate")
	} else {
		i.Metrics.in("queued")
	}
	return out, nil
}

// Enqueue queues a delivery of n on the relay queue. A complete notification
// gets its deterministic task id, so a copy already waiting is refused by
// asynq (queued=false); an incomplete one (the text format: no timestamp)
// gets a random id and is deduplicated by the worker once resolved.
func Enqueue(ctx context.Context, q Enqueuer, n Notification, maxRetry int) (queued bool, err error) {
	payload, err := json.Marshal(n)
	if err != nil {
		return false, err
	}
	id := ""
	if n.Complete() {
		id = TaskID(n)
	} else {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = "relay-r-" + hex.EncodeToString(b[:])
	}
	_, err = q.EnqueueContext(ctx, asynq.NewTask(TaskType, payload),
		asynq.Queue(jobs.QueueRelay), asynq.TaskID(id), asynq.MaxRetry(maxRetry), asynq.Timeout(2*time.Minute))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return false, nil
	default:
		return false, fmt.Errorf("relay: enqueue: %w", err)
	}
}
