package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/retry"
)

// TaskType is the asynq task that delivers one notification to Django.
const TaskType = "relay:deliver"

// RetryWindow is how long a delivery is retried before it is archived.
const RetryWindow = 24 * time.Hour

// Django posts notifications to Django's webhook.
type Django struct {
	URL  string
	Key  string // PREFECT_NOTIFICATIONS_WEBHOOK_KEY
	HTTP *http.Client
}

// NewDjango builds the client: 15 s per request, redirects not followed (a
// redirected POST loses its body; a 3xx is a misrouted URL, so a failure).
func NewDjango(u *url.URL, key string) *Django {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 128
	target := ""
	if u != nil {
		target = u.String()
	}
	return &Django{URL: target, Key: key, HTTP: &http.Client{
		Transport:     tr,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// DeliveryError is a failed POST to Django.
type DeliveryError struct {
	Status     int // 0: no answer (timeout, refused)
	RetryAfter time.Duration
	Permanent  bool // 400/401/403/410: Django rejects it; retrying cannot help
	Err        error
}

func (e *DeliveryError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("django unreachable: %v", e.Err)
	}
	return fmt.Sprintf("django answered %d", e.Status)
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Send POSTs the notification; nil means Django answered 2xx.
func (d *Django) Send(ctx context.Context, webhookID string, n Notification) error {
	body, _ := json.Marshal(map[string]string{"body": DjangoBody(n)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return &DeliveryError{Permanent: true, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Notification-Key", d.Key)
	req.Header.Set("Webhook-Id", webhookID)
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return &DeliveryError{Err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return nil
	case s == 400 || s == 401 || s == 403 || s == 410:
		return &DeliveryError{Status: s, Permanent: true}
	default:
		return &DeliveryError{Status: s, RetryAfter: retry.After(resp.Header.Get("Retry-After"), time.Now())}
	}
}

// RetryDelay is the asynq RetryDelayFunc for relay tasks: RELAY_RETRY_SCHEDULE
// (its last entry repeating) with ±20 % jitter, or Retry-After when longer.
// n is the number of retries so far (0 after the first failure).
func RetryDelay(schedule []time.Duration, n int, err error) time.Duration {
	d := retry.Schedule(schedule).Delay(n)
	var de *DeliveryError
	if errors.As(err, &de) && de.RetryAfter > d {
		d = min(de.RetryAfter, 6*time.Hour)
	}
	return d
}

// MaxRetries is how many retries the schedule fits into the retry window;
// asynq archives the task after the last one.
func MaxRetries(schedule []time.Duration) int {
	if len(schedule) == 0 {
		return 0
	}
	var total time.Duration
	n := 0
	for {
		total += schedule[min(n, len(schedule)-1)]
		if total > RetryWindow || n > 100000 {
			return n
		}
		n++
	}
}

// Handler delivers notifications (asynq handler for TaskType).
type Handler struct {
	Store   *Store
	Django  *Django
	Prefect *prefect.Client // looks up runs for notifications lacking name, state or timestamp
	States  StateFilter
	Log     logrus.FieldLogger
	Metrics *Metrics
	// BusyWait is how long to wait between checks while another delivery of
	// the same run is in flight.
	BusyWait time.Duration
	// CatchUp sends the deliveries waiting in retry once Django is back
	// (nil: they wait for their next scheduled step).
	CatchUp *CatchUp
}

// ProcessTask implements asynq.Handler.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var n Notification
	if err := json.Unmarshal(t.Payload(), &n); err != nil {
		return fmt.Errorf("relay: bad task payload: %v: %w", err, asynq.SkipRetry)
	}
	owner, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	return h.Process(ctx, n, owner, retried >= maxRetry)
}

// Process delivers n on behalf of task owner; lastAttempt says asynq will
// archive the task if this attempt fails.
func (h *Handler) Process(ctx context.Context, n Notification, owner string, lastAttempt bool) error {
	log := h.Log.WithFields(logrus.Fields{"flow_run_id": n.FlowRunID, "state": n.State, "task_id": owner, "source": n.Source})

	if !n.Complete() {
		var err error
		if n, err = h.resolve(ctx, n); err != nil {
			if prefect.IsNotFound(err) {
				log.Warn("relay: flow run not found in Prefect; notification dropped")
				h.Metrics.delivery("not_found")
				return nil
			}
			log.WithError(err).Warn("relay: cannot look the flow run up in Prefect; will retry")
			return err
		}
	}
	if !h.States.Allows(n.State) {
		h.Metrics.delivery("filtered")
		return nil
	}
	webhookID := WebhookID(n)
	log = log.WithField("webhook_id", webhookID)

	if admitted, err := h.admit(ctx, n, owner, log); !admitted {
		return err
	}

	start := time.Now()
	err := h.Django.Send(ctx, webhookID, n)
	// Release with a fresh context: the task's may be done, and a held lock
	// would stall the run's next delivery for a whole lease.
	// Retried through a failover of the Redis primary: a delivery whose
	// record is lost would be sent again.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jobs.FailoverGrace+5*time.Second)
	defer cancel()
	if ferr := jobs.Persist(fctx, func(c context.Context) error { return h.Store.Finish(c, n, owner, err == nil) }); ferr != nil {
		log.WithError(ferr).Warn("relay: cannot record the delivery in Redis")
	}
	h.Metrics.observeSend(time.Since(start))
	if err == nil {
		h.Metrics.delivery("delivered")
		if !n.Received.IsZero() {
			h.Metrics.observeEndToEnd(time.Since(n.Received))
		}
		log.Debug("relay: delivered")
		h.CatchUp.Succeeded(fctx)
		return nil
	}
	if de := (*DeliveryError)(nil); errors.As(err, &de) && !de.Permanent {
		h.CatchUp.Failed(fctx)
	}
	return h.failed(err, n, lastAttempt, log)
}

// admit waits until the store lets this task deliver n; false (with the
// error, if any) when n must not be delivered: a duplicate or a stale state.
func (h *Handler) admit(ctx context.Context, n Notification, owner string, log *logrus.Entry) (bool, error) {
	for {
		v, err := h.Store.Admit(ctx, n, owner)
		if err != nil {
			return false, err
		}
		switch v {
		case Duplicate:
			log.Debug("relay: duplicate notification dropped")
			h.Metrics.delivery("duplicate")
			return false, nil
		case Stale:
			log.Info("relay: stale state dropped (the run already reached a newer terminal state)")
			h.Metrics.delivery("stale")
			return false, nil
		case Busy:
			wait := h.BusyWait
			if wait <= 0 {
				wait = 10 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		return true, nil
	}
}

// failed decides what a failed send becomes: archived at once (Django
// rejects it), archived for good (the retry window is spent), or retried.
func (h *Handler) failed(err error, n Notification, lastAttempt bool, log *logrus.Entry) error {
	var de *DeliveryError
	if errors.As(err, &de) && de.Permanent {
		h.Metrics.delivery("rejected")
		log.WithField("status", de.Status).Error("relay: DJANGO REJECTED THE NOTIFICATION — check DJANGO_WEBHOOK_URL and " +
			"PREFECT_NOTIFICATIONS_WEBHOOK_KEY; the delivery is archived (replay it from the relay admin routes)")
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	// The window counts from receipt, so Retry-After answers (up to 6 h
	// each) cannot stretch it beyond what MaxRetries assumed.
	if lastAttempt || (!n.Received.IsZero() && time.Since(n.Received) >= RetryWindow) {
		h.Metrics.delivery("archived")
		log.WithError(err).Error("relay: delivery failed for 24 h; archived (replay it from the relay admin routes)")
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	h.Metrics.delivery("retry")
	log.WithError(err).Warn("relay: delivery failed; will retry")
	return err
}

// resolve fills in what the inbound body lacked from Prefect: the run's name,
// and the state's timestamp and id (from the run's state history when the
// run has moved on since).
func (h *Handler) resolve(ctx context.Context, n Notification) (Notification, error) {
	if h.Prefect == nil {
		return n, errors.New("relay: no Prefect client to complete the notification")
	}
	var fr flowRunJSON
	if err := h.Prefect.Get(ctx, "/flow_runs/"+url.PathEscape(n.FlowRunID), &fr); err != nil {
		return n, err
	}
	cur, curTS := fr.notification()
	if n.Name == "" {
		n.Name = cur.Name
	}
	if n.State == "" {
		n.State, n.StateType, n.StateID = cur.State, cur.StateType, cur.StateID
	}
	if n.StateType == "" {
		n.StateType = typeOfName[n.State]
	}
	if !n.Timestamp.IsZero() {
		return n, nil
	}
	if n.State == cur.State {
		n.Timestamp, _ = parseTime(curTS)
		n.StateID = cur.StateID
		return n, nil
	}
	var states []struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Type      string `json:"type"`
		Timestamp string `json:"timestamp"`
	}
	if err := h.Prefect.Get(ctx, "/flow_run_states/?flow_run_id="+url.QueryEscape(n.FlowRunID), &states); err != nil {
		return n, err
	}
	var best time.Time
	for _, s := range states {
		if s.Name != n.State {
			continue
		}
		if ts, err := parseTime(s.Timestamp); err == nil && ts.After(best) {
			best, n.StateID = ts, s.ID
			if n.StateType == "" {
				n.StateType = normType(s.Type)
			}
		}
	}
	if best.IsZero() {
		// The state is not in the history (a custom name?): order it just
		// before the run's current state, which it preceded.
		cts, _ := parseTime(curTS)
		best = cts.Add(-time.Microsecond)
	}
	n.Timestamp = best
	return n, nil
}

// StateFilter is RELAY_STATES; empty allows every state.
type StateFilter map[string]bool

// NewStateFilter builds the filter from state names.
func NewStateFilter(names []string) StateFilter {
	f := StateFilter{}
	for _, s := range names {
		f[strings.TrimSpace(s)] = true
	}
	return f
}

// Allows reports whether notifications for state are forwarded. An unknown
// (empty) state is allowed so the worker can resolve it first.
func (f StateFilter) Allows(state string) bool {
	return len(f) == 0 || state == "" || f[state]
}
