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
	"io"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// Enqueuer is the part of asynq.Client the relay uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Ingress is the relay's one entry point: Prefect's notifications come in
// through Ingest and leave durably queued for a worker to deliver.
type Ingress struct {
	Queue    Enqueuer
	Key      string // RELAY_INBOUND_KEY
	States   StateFilter
	MaxRetry int // MaxRetries(RELAY_RETRY_SCHEDULE)
	Log      logrus.FieldLogger
	Now      func() time.Time
	metrics  *inboundMetrics
}

// Outcome is what the ingress did with a notification.
type Outcome struct {
	Status    string `json:"status"` // queued, duplicate, ignored
	FlowRunID string `json:"flow_run_id"`
	State     string `json:"state,omitempty"`
	WebhookID string `json:"webhook_id,omitempty"`
}

// MaxBody bounds an inbound notification; real ones are < 2 KiB.
const MaxBody = 1 << 20

// MaxClockSkew is how far past its receipt a notification's state timestamp
// may lie. A later one is refused (400, relay_inbound_total{result=
// "future_timestamp"}): admitted, it would raise its run's ordering marks
// into the future and every real later state would be dropped as stale.
const MaxClockSkew = 5 * time.Minute

// Errors of Ingest besides *ParseError (an unusable body) and *QueueError
// (Redis refused the delivery).
var (
	ErrOff          = errors.New("relay is not configured: set PREFECT_NOTIFICATIONS_WEBHOOK_KEY (the key Django checks) to turn it on")
	ErrUnauthorized = errors.New("missing or invalid X-Notification-Key")
	ErrTooLarge     = errors.New("notification body exceeds 1 MiB")
	ErrUnreadable   = errors.New("could not read the notification body")
)

// QueueError is a notification the queue (Redis) refused.
type QueueError struct{ Err error }

func (e *QueueError) Error() string {
	return "could not queue the notification (Redis unavailable): " + e.Err.Error()
}
func (e *QueueError) Unwrap() error { return e.Err }

// Ingest checks the presented X-Notification-Key, reads and parses the body
// and queues the notification. Every failure is a typed error (see ErrOff
// and the errors next to it) and is counted in relay_inbound_total; a nil
// Ingress (relay off) answers ErrOff.
func (i *Ingress) Ingest(ctx context.Context, key string, body io.Reader) (Outcome, error) {
	if i == nil {
		return Outcome{}, ErrOff
	}
	if !i.keyMatches(key) {
		i.metrics.in("unauthorized")
		return Outcome{}, ErrUnauthorized
	}
	data, err := io.ReadAll(io.LimitReader(body, MaxBody+1))
	switch {
	case err != nil:
		return Outcome{}, fmt.Errorf("%w: %w", ErrUnreadable, err)
	case len(data) > MaxBody:
		i.metrics.in("too_large")
		return Outcome{}, ErrTooLarge
	}
	out, err := i.accept(ctx, data)
	var pe *ParseError
	if errors.As(err, &pe) && i.Log != nil {
		// Prefect never retries a webhook: this line and the
		// relay_inbound_total{result="unparseable"} counter are all that is
		// left of the notification.
		i.Log.WithFields(logrus.Fields{"bytes": len(data), "reason": pe.Message}).Warn("relay: unparseable notification dropped")
	}
	return out, err
}

// keyMatches compares the presented key in constant time (hashing first
// hides the key's length too). No configured key matches nothing: an open
// relay would let anyone trigger Django's failure e-mails.
func (i *Ingress) keyMatches(got string) bool {
	if i.Key == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(i.Key))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// accept parses body and queues it.
func (i *Ingress) accept(ctx context.Context, body []byte) (Outcome, error) {
	n, err := Parse(body)
	if err != nil {
		i.metrics.in("unparseable")
		return Outcome{}, err
	}
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	n.Received = now().UTC()
	if n.Timestamp.After(n.Received.Add(MaxClockSkew)) {
		i.metrics.in("future_timestamp")
		return Outcome{}, parseErr("state timestamp %s is more than %s ahead of the relay's clock (%s)",
			n.Timestamp.Format(time.RFC3339Nano), MaxClockSkew, n.Received.Format(time.RFC3339))
	}
	out := Outcome{FlowRunID: n.FlowRunID, State: n.State}
	if !i.States.Allows(n.State) {
		i.metrics.in("ignored")
		out.Status = "ignored"
		return out, nil
	}
	queued, err := Enqueue(ctx, i.Queue, n, i.MaxRetry)
	if err != nil {
		i.metrics.in("enqueue_failed")
		return out, &QueueError{Err: err}
	}
	if n.Complete() {
		out.WebhookID = WebhookID(n)
	}
	out.Status = "queued"
	if !queued {
		out.Status = "duplicate"
		i.metrics.in("duplicate")
	} else {
		i.metrics.in("queued")
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
