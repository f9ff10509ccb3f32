package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// DoneChannel is the Redis pub/sub channel a worker publishes a job id on
// when the job's answer is final. The api's waiters wake on it instead of
// polling; only ids travel on it.
const DoneChannel = "prefect-proxy:jobs:done"

// idempotencyNS namespaces the deterministic job ids made from Idempotency-Key.
var idempotencyNS = uuid.MustParse("6f1d3c2e-5b7a-4c1e-9a52-0d4b3f7e8a61")

// Defaults of the job settings (JOB_MAX_ATTEMPTS, JOB_RETRY_WINDOW,
// JOB_RETENTION, JOB_ATTEMPT_TIMEOUT, JOB_WAIT_TIMEOUT).
const (
	// DefaultMaxAttempts caps a job's attempts on top of its retry window:
	// with RetryDelayCap, DefaultRetryWindow takes about 43.
	DefaultMaxAttempts = 100
	// DefaultRetryWindow is how long a job retries a retryable failure,
	// counted from when it was queued: long enough for a Prefect restart
	// or upgrade.
	DefaultRetryWindow = 30 * time.Minute
	DefaultRetention   = 24 * time.Hour
	// DefaultAttemptTimeout bounds one attempt of a job in a worker.
	DefaultAttemptTimeout = 5 * time.Minute
	// DefaultWait is how long a synchronous write route waits for its job:
	// under Django's 30 s, so Django gets the 504 with the job id.
	DefaultWait = 25 * time.Second
)

// ClientConfig configures the api side of jobs.
type ClientConfig struct {
	Key         []byte        // JOB_ENCRYPTION_KEY
	Ops         *Registry     // the write operations (their kinds and queues)
	MaxAttempts int           // JOB_MAX_ATTEMPTS
	Retention   time.Duration // JOB_RETENTION
	// AttemptTimeout bounds one attempt of a job in a worker (asynq's task
	// timeout). Default DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// PollInterval is the fallback re-check while waiting, in case a wake-up
	// is lost (pub/sub is fire-and-forget). Default 1 s.
	PollInterval time.Duration
	// Replication, if set, confirms every enqueued job on Redis replicas
	// before Enqueue returns (REDIS_WAIT_REPLICAS); nil: no confirmation.
	Replication *Replication
	Log         logrus.FieldLogger
}

// Client enqueues jobs and reads their state. One per api process.
type Client struct {
	cfg    ClientConfig
	rdb    redis.UniversalClient
	aq     *asynq.Client
	insp   *asynq.Inspector
	sealer *Sealer
	ops    *Registry
	hub    *hub
}

// ErrNotFound is an unknown or expired job.
var ErrNotFound = errors.New("jobs: no such job")

// NewClient connects to Redis and subscribes to DoneChannel. rdb is owned by
// the caller (closed after Close).
func NewClient(ctx context.Context, rdb redis.UniversalClient, cfg ClientConfig) (*Client, error) {
	sealer, err := NewSealer(cfg.Key)
	if err != nil {
		return nil, err
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		cfg.Log = l
	}
	c := &Client{
		cfg:    cfg,
		rdb:    rdb,
		aq:     asynq.NewClientFromRedisClient(rdb),
		insp:   asynq.NewInspectorFromRedisClient(rdb),
		sealer: sealer,
		ops:    cfg.Ops,
	}
	if c.ops == nil {
		c.ops = NewRegistry()
	}
	c.hub, err = startHub(ctx, rdb, cfg.Log)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops the subscription. The Redis client stays open.
func (c *Client) Close() {
	c.hub.close()
	_ = c.aq.Close()
}

// EnqueueOptions are per-request options.
type EnqueueOptions struct {
	// IdempotencyKey, when set, makes the job id deterministic: a repeat with
	// the same key (and the same payload) returns the same job.
	IdempotencyKey string
	// RequestID, the api request's id, goes with the job into the worker's logs.
	RequestID string
}

// Enqueued identifies a job.
type Enqueued struct {
	ID    string
	Queue string
	// Existing is true when an Idempotency-Key matched an earlier job.
	Existing bool
}

// Enqueue seals p and queues a job for op. A repeated Idempotency-Key with a
// different payload is a 422.
func Enqueue[P any](ctx context.Context, c *Client, op Op[P], p P, opts EnqueueOptions) (Enqueued, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return Enqueued{}, apperr.Wrap(apperr.Internal, err, "internal error")
	}
	return c.enqueue(ctx, op.Kind, op.Queue, raw, opts)
}

func (c *Client) enqueue(ctx context.Context, kind, queue string, raw []byte, opts EnqueueOptions) (Enqueued, error) {
	sum := sha256.Sum256(append([]byte(kind+"\x00"), raw...))
	env := envelope{Payload: raw, Fingerprint: hex.EncodeToString(sum[:]), CreatedAt: time.Now().UTC(), RequestID: opts.RequestID}
	id := uuid.NewString()
	if opts.IdempotencyKey != "" {
		env.RunKey = id
		id = uuid.NewSHA1(idempotencyNS, []byte(kind+"\x00"+opts.IdempotencyKey)).String()
	}
	plain, err := json.Marshal(env)
	if err != nil {
		return Enqueued{}, apperr.Wrap(apperr.Internal, err, "internal error")
	}
	task := asynq.NewTask(kind, c.sealer.Seal(plain, payloadAAD(kind, id)),
		asynq.TaskID(id),
		asynq.Queue(queue),
		asynq.MaxRetry(c.cfg.MaxAttempts-1),
		asynq.Retention(c.cfg.Retention),
		asynq.Timeout(c.cfg.AttemptTimeout),
	)
	// Concurrent repeats of a key race each other (an expired job being
	// replaced, say): each conflict re-reads what holds the id now.
	const tries = 10
	for try := 0; ; try++ {
		_, err = c.aq.EnqueueContext(ctx, task)
		if err == nil {
			return c.confirm(ctx, Enqueued{ID: id, Queue: queue})
		}
		if !errors.Is(err, asynq.ErrTaskIDConflict) || opts.IdempotencyKey == "" {
			return Enqueued{}, apperr.Wrap(apperr.Unavailable, err, "the job queue (Redis) is unavailable")
		}
		if try == tries-1 {
			return Enqueued{}, apperr.Wrap(apperr.Unavailable, err, "concurrent requests with this Idempotency-Key; retry")
		}
		info, err := c.insp.GetTaskInfo(queue, id)
		if err != nil {
			if errors.Is(err, asynq.ErrTaskNotFound) {
				continue // expired between the two calls
			}
			return Enqueued{}, apperr.Wrap(apperr.Unavailable, err, "the job queue (Redis) is unavailable")
		}
		if c.expired(info) {
			// A failed job stays in asynq's archive (for /monitoring/) longer
			// than JOB_RETENTION; past it, the key is free again, whatever
			// the body.
			if err := c.deleteExpired(ctx, queue, id); err != nil {
				return Enqueued{}, apperr.Wrap(apperr.Unavailable, err, "the job queue (Redis) is unavailable")
			}
			continue
		}
		prev, err := c.openEnvelope(info)
		if err != nil || prev.Fingerprint != env.Fingerprint {
			return Enqueued{}, apperr.Validation(apperr.Field("idempotency_key_reused",
				"Idempotency-Key was already used for a different request", "header", "Idempotency-Key"))
		}
		return c.confirm(ctx, Enqueued{ID: id, Queue: queue, Existing: true})
	}
}

// confirm makes sure the job survives a failover of the Redis primary before
// it is acknowledged: unconfirmed, the client gets a 503 naming the job,
// which may or may not run.
func (c *Client) confirm(ctx context.Context, e Enqueued) (Enqueued, error) {
	if err := c.cfg.Replication.Confirm(ctx, TaskKey(e.Queue, e.ID)); err != nil {
		c.cfg.Log.WithError(err).WithField("job_id", e.ID).Warn("jobs: enqueued job not confirmed on a Redis replica; answering 503")
		return Enqueued{}, &apperr.Error{Code: apperr.Unavailable, Err: err,
			Message: "the job queue (Redis) could not confirm the job on a replica (failover in progress?); " +
				"it may or may not run: check /jobs/" + e.ID + " or retry with the same Idempotency-Key",
			Extra: map[string]any{"job_id": e.ID}}
	}
	return e, nil
}

// deleteExpired deletes the expired job holding id. It re-reads the job
// under a short lock: a concurrent repeat of the key that read the expired
// job a moment ago must not delete the new job that replaced it (which
// would run the work twice, under two run keys). Without the lock it
// returns at once, leaving the holder to finish.
func (c *Client) deleteExpired(ctx context.Context, queue, id string) error {
	lock := "prefect-proxy:jobs:replacing:" + id
	ok, err := c.rdb.SetNX(ctx, lock, "1", 5*time.Second).Result()
	if err != nil {
		return err
	}
	if !ok {
		time.Sleep(10 * time.Millisecond)
		return nil
	}
	defer c.rdb.Del(context.WithoutCancel(ctx), lock)
	info, err := c.insp.GetTaskInfo(queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound):
		return nil
	case err != nil:
		return err
	case !c.expired(info):
		return nil
	}
	if err := c.insp.DeleteTask(queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return err
	}
	return nil
}

// Get reads a job. ErrNotFound when unknown or expired.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrNotFound
	}
	for _, q := range c.ops.queues {
		j, err := c.get(q, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		return j, err
	}
	return nil, ErrNotFound
}

func (c *Client) get(queue, id string) (*Job, error) {
	info, err := c.insp.GetTaskInfo(queue, id)
	if err != nil {
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			return nil, ErrNotFound
		}
		return nil, apperr.Wrap(apperr.Unavailable, err, "the job queue (Redis) is unavailable")
	}
	if _, ok := c.ops.ops[info.Type]; !ok || c.expired(info) {
		return nil, ErrNotFound
	}
	return c.jobOf(info)
}

// expired: asynq deletes completed tasks after Retention itself; archived
// (failed) ones it keeps much longer, so the api hides them past retention.
func (c *Client) expired(info *asynq.TaskInfo) bool {
	return info.State == asynq.TaskStateArchived && !info.LastFailedAt.IsZero() &&
		time.Since(info.LastFailedAt) > c.cfg.Retention
}

func (c *Client) openEnvelope(info *asynq.TaskInfo) (envelope, error) {
	var env envelope
	plain, err := c.sealer.Open(info.Payload, payloadAAD(info.Type, info.ID))
	if err != nil {
		return env, err
	}
	err = json.Unmarshal(plain, &env)
	return env, err
}

func (c *Client) jobOf(info *asynq.TaskInfo) (*Job, error) {
	j := &Job{ID: info.ID, Type: info.Type, Queue: info.Queue}
	if env, err := c.openEnvelope(info); err == nil {
		j.CreatedAt = env.CreatedAt
	}
	j.State, j.Attempts, j.CompletedAt = stateOf(info)
	if out := c.outcomeOf(info); out != nil {
		j.Status, j.Body = out.Status, out.Body
		if out.Final {
			// The worker writes the answer before asynq moves the task out of
			// "active"; the answer is what counts.
			j.Attempts = out.Attempt
			j.CompletedAt = out.At
			j.State = StateFailed
			if out.Status == http.StatusOK {
				j.State = StateSucceeded
			}
		}
	}
	lostAnswer(j, info)
	return j, nil
}

// outcomeOf is the worker's sealed answer, or nil when there is none it can
// read.
func (c *Client) outcomeOf(info *asynq.TaskInfo) *outcome {
	if len(info.Result) == 0 {
		return nil
	}
	plain, err := c.sealer.Open(info.Result, resultAAD(info.ID))
	if err != nil {
		return nil
	}
	out := &outcome{}
	if json.Unmarshal(plain, out) != nil {
		return nil
	}
	return out
}

// stateOf is a job's state as asynq sees it.
func stateOf(info *asynq.TaskInfo) (state State, attempts int, completed time.Time) {
	switch info.State {
	case asynq.TaskStateActive:
		return StateRunning, info.Retried + 1, time.Time{}
	case asynq.TaskStateRetry:
		return StateRetrying, info.Retried, time.Time{}
	case asynq.TaskStatePending, asynq.TaskStateScheduled:
		if info.Retried > 0 {
			return StateRetrying, info.Retried, time.Time{}
		}
		return StateQueued, info.Retried, time.Time{}
	case asynq.TaskStateCompleted:
		return StateSucceeded, info.Retried + 1, info.CompletedAt
	case asynq.TaskStateArchived:
		return StateFailed, info.Retried + 1, info.LastFailedAt
	}
	return StateQueued, 0, time.Time{}
}

// lostAnswer gives a finished job without a readable answer a clear one.
func lostAnswer(j *Job, info *asynq.TaskInfo) {
	if j.State == StateFailed && j.Status == 0 {
		// Archived without an answer we can read: the last attempt was cut
		// off (deadline, worker lost) or api and worker disagree on
		// JOB_ENCRYPTION_KEY. asynq's error text is ours (see Runner).
		j.Status = http.StatusInternalServerError
		if strings.Contains(info.LastErr, "deadline") || strings.Contains(info.LastErr, "lease expired") {
			j.Status = http.StatusGatewayTimeout
		}
		j.Body, _ = json.Marshal(map[string]any{"detail": "the job did not complete: " + info.LastErr})
	}
	if j.State == StateSucceeded && j.Status == 0 {
		// Completed in asynq, but the worker's answer is missing (its write
		// hit a Redis fault) or unreadable: the work is done, the answer lost.
		j.Status = http.StatusBadGateway
		j.Body = detailBody("the job completed but its answer could not be read; check the change in Prefect")
	}
}

// Wait waits up to d for the job to be done and returns its latest state
// (Done() false when d ran out). It wakes on the worker's publication and
// re-checks every PollInterval in case a message was lost. A Redis fault does
// not end the wait: it is returned only if Redis is still failing when d runs
// out.
func (c *Client) Wait(ctx context.Context, e Enqueued, d time.Duration) (*Job, error) {
	ch := c.hub.subscribe(e.ID)
	defer c.hub.unsubscribe(e.ID, ch)
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	poll := time.NewTicker(c.cfg.PollInterval)
	defer poll.Stop()
	// After a wake-up the answer is normally readable at once; when it is not
	// (the worker's answer could not be read, so the state comes from asynq,
	// which moves the task a moment after the publication), re-check soon
	// rather than at the next slow poll.
	var soon <-chan time.Time
	recheck := 10 * time.Millisecond
	for {
		j, err := c.lookup(ctx, e)
		switch {
		case err == nil:
			if j.Done() || d <= 0 {
				return j, nil
			}
		case errors.Is(err, ErrNotFound) || d <= 0:
			return nil, err
		default:
			// Redis blipped: the job goes on, and so does the wait.
			if !c.pauseAfterBlip(ctx, timeout) {
				return nil, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return j, nil
		case <-timeout:
			return j, nil
		case <-ch:
			soon = time.After(recheck)
		case <-soon:
			if recheck *= 2; recheck < c.cfg.PollInterval {
				soon = time.After(recheck)
			}
		case <-poll.C:
		}
	}
}

func (c *Client) lookup(ctx context.Context, e Enqueued) (*Job, error) {
	if e.Queue != "" {
		return c.get(e.Queue, e.ID)
	}
	return c.Get(ctx, e.ID)
}

// pauseAfterBlip waits a moment after a Redis fault before the next
// re-check (soon: a wake-up may have been lost meanwhile). It reports false
// when the wait is over instead.
func (c *Client) pauseAfterBlip(ctx context.Context, timeout <-chan time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case <-timeout:
		return false
	case <-ctx.Done():
		return false
	case <-time.After(min(c.cfg.PollInterval, 100*time.Millisecond)):
		return true
	}
}

func payloadAAD(typ, id string) []byte { return []byte("payload\x00" + typ + "\x00" + id) }
func resultAAD(id string) []byte       { return []byte("result\x00" + id) }

// hub fans DoneChannel messages out to waiters: one subscription per process.
type hub struct {
	ps      *redis.PubSub
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	done    chan struct{}
}

func startHub(ctx context.Context, rdb redis.UniversalClient, log logrus.FieldLogger) (*hub, error) {
	ps := rdb.Subscribe(ctx, DoneChannel)
	// Wait for the confirmation, so a job finishing right after the first
	// Enqueue is not missed.
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("jobs: subscribe %s: %w", DoneChannel, err)
	}
	h := &hub{ps: ps, waiters: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for msg := range ps.Channel() {
			h.mu.Lock()
			for ch := range h.waiters[msg.Payload] {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			h.mu.Unlock()
		}
		log.Debug("jobs: done-channel subscription closed")
	}()
	return h, nil
}

func (h *hub) subscribe(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	m := h.waiters[id]
	if m == nil {
		m = map[chan struct{}]struct{}{}
		h.waiters[id] = m
	}
	m[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

func (h *hub) unsubscribe(id string, ch chan struct{}) {
	h.mu.Lock()
	if m := h.waiters[id]; m != nil {
		delete(m, ch)
		if len(m) == 0 {
			delete(h.waiters, id)
		}
	}
	h.mu.Unlock()
}

func (h *hub) close() {
	_ = h.ps.Close()
	<-h.done
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
