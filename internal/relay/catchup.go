package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// Redis keys of the catch-up, shared by every worker.
const (
	failingKey = "relay:django:failing" // set by a retryable failure, cleared by the catch-up
	catchUpKey = "relay:django:catchup" // lease: one catch-up per Cooldown, across workers
	probeKey   = "relay:django:probe"   // lease: one probe per ProbeInterval, across workers
)

// CatchUp sends the deliveries waiting in retry as soon as Django is back,
// instead of at each one's next step of RELAY_RETRY_SCHEDULE (up to minutes
// apart):
//
//   - a retryable failure sets a flag in Redis ("Django is failing");
//   - while the flag is set, one worker every ProbeInterval moves the oldest
//     waiting delivery to the front of the queue: a probe that is a real
//     delivery, so a Django that keeps failing costs one extra request per
//     interval and the rest keep their schedule;
//   - the first success that finds the flag set (and wins the Cooldown
//     lease) clears it and moves every waiting delivery to pending, in
//     state-timestamp order, so a run's states are dequeued in their order
//     (the store's per-run lock and stale check still decide admission).
//
// A nil *CatchUp does nothing.
type CatchUp struct {
	Redis     redis.UniversalClient
	Inspector *asynq.Inspector
	Log       logrus.FieldLogger
	// Cooldown is the least time between two catch-ups, so a Django that
	// flaps does not get every waiting delivery on each of its successes.
	Cooldown time.Duration
	// ProbeInterval is how often a waiting delivery is tried early while
	// Django is failing (0: never).
	ProbeInterval time.Duration
	// Max bounds how many waiting deliveries one catch-up moves.
	Max int
}

// NewCatchUp builds the catch-up with its defaults: 10 s cooldown, a probe
// every 5 s, at most 100 000 deliveries per catch-up.
func NewCatchUp(rdb redis.UniversalClient, log logrus.FieldLogger) *CatchUp {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &CatchUp{Redis: rdb, Inspector: asynq.NewInspectorFromRedisClient(rdb), Log: log,
		Cooldown: 10 * time.Second, ProbeInterval: 5 * time.Second, Max: 100000}
}

// Failed records that Django failed a delivery in a way that is retried.
func (c *CatchUp) Failed(ctx context.Context) {
	if c == nil {
		return
	}
	if err := c.Redis.Set(ctx, failingKey, "1", RetryWindow+time.Hour).Err(); err != nil {
		c.Log.WithError(err).Warn("relay: cannot record that Django is failing")
	}
}

// Succeeded is called after a delivery Django accepted: if Django had been
// failing, the waiting deliveries are moved to pending (by one worker).
func (c *CatchUp) Succeeded(ctx context.Context) {
	if c == nil {
		return
	}
	n, err := c.Redis.Exists(ctx, failingKey).Result()
	if err != nil || n == 0 {
		return
	}
	won, err := c.Redis.SetNX(ctx, catchUpKey, "1", max(c.Cooldown, time.Millisecond)).Result()
	if err != nil || !won {
		return
	}
	// Cleared before moving: a failure during the catch-up sets it again,
	// and the next success after the cooldown catches that up too.
	if err := c.Redis.Del(ctx, failingKey).Err(); err != nil {
		return
	}
	moved, err := c.RunWaiting()
	log := c.Log.WithField("moved", moved)
	if err != nil {
		log.WithError(err).Warn("relay: Django is back; could not move every waiting delivery forward")
		return
	}
	if moved > 0 {
		log.Info("relay: Django is back; waiting deliveries moved forward")
	}
}

// RunWaiting moves up to Max deliveries from the relay queue's retry set to
// pending, oldest state first, and reports how many it moved.
func (c *CatchUp) RunWaiting() (int, error) {
	waiting, err := c.waiting(c.Max)
	if err != nil || len(waiting) == 0 {
		return 0, err
	}
	slices.SortStableFunc(waiting, func(a, b waitingTask) int {
		return a.n.Timestamp.Compare(b.n.Timestamp)
	})
	moved := 0
	for _, w := range waiting {
		err := c.Inspector.RunTask(jobs.QueueRelay, w.id)
		switch {
		case err == nil:
			moved++
		case errors.Is(err, asynq.ErrTaskNotFound):
			// Already run by asynq's forwarder or another worker.
		default:
			return moved, err
		}
	}
	return moved, nil
}

// Probe moves the delivery with the oldest state among the first page of
// the retry set to pending, when Django is failing and no other worker
// probed within ProbeInterval.
func (c *CatchUp) Probe(ctx context.Context) {
	if c == nil || c.ProbeInterval <= 0 {
		return
	}
	if n, err := c.Redis.Exists(ctx, failingKey).Result(); err != nil || n == 0 {
		return
	}
	// The lease is a little shorter than the interval so this worker's next
	// tick finds it expired; across workers it still allows about one probe
	// per interval.
	if won, err := c.Redis.SetNX(ctx, probeKey, "1", c.ProbeInterval*9/10).Result(); err != nil || !won {
		return
	}
	waiting, err := c.waiting(100)
	if err != nil || len(waiting) == 0 {
		return
	}
	oldest := slices.MinFunc(waiting, func(a, b waitingTask) int { return a.n.Timestamp.Compare(b.n.Timestamp) })
	if err := c.Inspector.RunTask(jobs.QueueRelay, oldest.id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		c.Log.WithError(err).Debug("relay: probe of Django could not be queued")
	}
}

// run probes every ProbeInterval until ctx ends.
func (c *CatchUp) run(ctx context.Context) {
	if c == nil || c.ProbeInterval <= 0 {
		return
	}
	t := time.NewTicker(c.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Probe(ctx)
		}
	}
}

type waitingTask struct {
	id string
	n  Notification
}

// waiting lists up to limit tasks of the relay queue's retry set.
func (c *CatchUp) waiting(limit int) ([]waitingTask, error) {
	const page = 1000
	var out []waitingTask
	for p := 1; len(out) < limit; p++ {
		tasks, err := c.Inspector.ListRetryTasks(jobs.QueueRelay, asynq.Page(p), asynq.PageSize(min(page, limit)))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for _, t := range tasks {
			var n Notification
			_ = json.Unmarshal(t.Payload, &n)
			out = append(out, waitingTask{id: t.ID, n: n})
		}
		if len(tasks) < min(page, limit) {
			break
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
