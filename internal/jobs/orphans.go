package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/encoding/protowire"
)

// Orphaned tasks.
//
// A task whose worker process dies (SIGKILL, OOM, a lost node) stays in
// asynq's "active" list. asynq's own recoverer gives it back only once its
// lease (30 s, extended by the worker's heartbeat every 5 s) has been expired
// for another 30 s, and looks only once a minute: the job runs again 60–90 s
// after the death, long after a synchronous caller got its 504.
//
// The Sweeper notices the death sooner from what asynq keeps in Redis:
//   - every live asynq server rewrites asynq:workers:{host:pid:id}, the ids
//     of the tasks it is running, every 5 s with a 10 s TTL;
//   - its heartbeat moves each running task's lease (the score in
//     asynq:{queue}:lease) forward every 5 s.
//
// A task listed by no live server whose lease score has not moved for
// orphanSilence (as seen by this sweeper's own clock, so clock skew between
// hosts does not matter) has lost its worker; a task just taken by a live
// worker is listed, or has its lease moved, within 5 s. The sweeper then
// puts it back at the head of its queue as asynq does on a graceful
// shutdown, and counts the lost attempt as asynq's recoverer would. The move
// is one Lua script that first checks that the lease score is still the one
// observed and that no live server lists the task, so any number of
// sweepers (one per worker process) and asynq's recoverer can race safely:
// one of them moves the task, the others find it gone.
//
// Worst case: a worker that stalls without dying (cut off from Redis for
// longer than orphanSilence) has its task re-run while it may still finish
// it; asynq's recoverer has the same risk after 60 s. Write jobs tolerate a
// second run (flow runs carry an idempotency key; the job's answer is the
// last attempt's).
const (
	// orphanSilence is how long a task must go without a heartbeat before it
	// is re-queued: asynq beats every 5 s, so this is two missed beats plus
	// slack for a busy host.
	orphanSilence = 12 * time.Second
	// sweepInterval is how often the sweeper looks.
	sweepInterval = time.Second
	// orphanError is the error recorded on the lost attempt; "lease expired"
	// is also asynq's wording, which Client.jobOf maps to a 504.
	orphanError = "worker lost (no heartbeat): task lease expired"
)

// asynq's Redis keys (github.com/hibiken/asynq/internal/base).
const (
	asynqAllQueues  = "asynq:queues"
	asynqAllWorkers = "asynq:workers"
)

func asynqQueueKey(queue, suffix string) string { return "asynq:{" + queue + "}:" + suffix }

// SweeperConfig configures a Sweeper.
type SweeperConfig struct {
	Redis    redis.UniversalClient
	Log      logrus.FieldLogger
	Registry prometheus.Registerer // nil: no metrics
	// Silence and Interval override orphanSilence and sweepInterval (tests).
	Silence  time.Duration
	Interval time.Duration
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Sweeper re-queues the tasks of dead worker processes (see above). Run one
// per worker process; several are safe together.
type Sweeper struct {
	cfg      SweeperConfig
	requeued *prometheus.CounterVec

	mu   sync.Mutex
	seen map[string]observation // queue + "\x00" + task id
}

type observation struct {
	lease float64   // the lease score last seen
	since time.Time // when this sweeper first saw that score
}

// NewSweeper builds a Sweeper.
func NewSweeper(cfg SweeperConfig) *Sweeper {
	if cfg.Silence <= 0 {
		cfg.Silence = orphanSilence
	}
	if cfg.Interval <= 0 {
		cfg.Interval = sweepInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		cfg.Log = l
	}
	s := &Sweeper{cfg: cfg, seen: map[string]observation{}}
	s.requeued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "proxy_jobs_orphans_requeued_total",
		Help: "Tasks re-queued because the worker process running them stopped its heartbeat (died), by queue.",
	}, []string{"queue"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.requeued)
	}
	return s
}

// Run sweeps every interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.WithError(err).Warn("orphaned-task sweep failed; retrying")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep looks once and re-queues the tasks found orphaned; it returns how
// many it moved.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	queues, workerKeys, leases, live, err := s.read(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now()
	moved := 0
	for _, o := range s.judge(queues, leases, live, now) {
		ok, err := s.requeue(ctx, o.queue, o.id, o.lease, workerKeys, now)
		if err != nil {
			return moved, fmt.Errorf("re-queue task %s: %w", o.id, err)
		}
		if ok {
			moved++
			s.requeued.WithLabelValues(o.queue).Inc()
			s.cfg.Log.WithFields(logrus.Fields{"job_id": o.id, "queue": o.queue}).
				Warnf("re-queued a task whose worker stopped its heartbeat %s ago (worker died?)", s.cfg.Silence)
		}
	}
	return moved, nil
}

// orphan is an active task whose lease has not moved for Silence while no
// live server lists it.
type orphan struct {
	queue, id string
	lease     float64
}

// read fetches, in two round trips, the queues, the live servers' task
// lists and every queue's leases.
func (s *Sweeper) read(ctx context.Context) (queues, workerKeys []string, leases []*redis.ZSliceCmd, live map[string]bool, err error) {
	rdb := s.cfg.Redis
	pipe := rdb.Pipeline()
	queuesCmd := pipe.SMembers(ctx, asynqAllQueues)
	// Members are scored with their expiry by the writer's clock; ones
	// expired for over a minute (more than any clock skew) are keys Redis
	// has long dropped. asynq prunes them only when asked for its servers.
	workersCmd := pipe.ZRangeByScore(ctx, asynqAllWorkers, &redis.ZRangeBy{
		Min: strconv.FormatInt(s.cfg.Now().Add(-time.Minute).Unix(), 10), Max: "+inf"})
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, nil, nil, err
	}
	queues, workerKeys = queuesCmd.Val(), workersCmd.Val()
	pipe = rdb.Pipeline()
	running := make([]*redis.StringSliceCmd, len(workerKeys))
	for i, k := range workerKeys {
		running[i] = pipe.HKeys(ctx, k)
	}
	leases = make([]*redis.ZSliceCmd, len(queues))
	for i, q := range queues {
		leases[i] = pipe.ZRangeWithScores(ctx, asynqQueueKey(q, "lease"), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, nil, nil, err
	}
	live = map[string]bool{}
	for _, cmd := range running {
		for _, id := range cmd.Val() {
			live[id] = true
		}
	}
	return queues, workerKeys, leases, live, nil
}

// judge updates what this sweeper has seen of each lease and returns the
// tasks silent for Silence: a lease score that changed restarts the count,
// a task a live server lists is never an orphan.
func (s *Sweeper) judge(queues []string, leases []*redis.ZSliceCmd, live map[string]bool, now time.Time) []orphan {
	var orphans []orphan
	s.mu.Lock()
	defer s.mu.Unlock()
	present := map[string]bool{}
	for i, q := range queues {
		for _, z := range leases[i].Val() {
			id, _ := z.Member.(string)
			key := q + "\x00" + id
			present[key] = true
			o, ok := s.seen[key]
			switch {
			case live[id]:
				delete(s.seen, key)
			case !ok || o.lease != z.Score:
				s.seen[key] = observation{lease: z.Score, since: now}
			case now.Sub(o.since) >= s.cfg.Silence:
				orphans = append(orphans, orphan{q, id, z.Score})
			}
		}
	}
	for key := range s.seen {
		if !present[key] {
			delete(s.seen, key)
		}
	}
	return orphans
}

// requeueOrphanCmd moves one task from active back to the head of pending,
// as asynq's requeue (graceful shutdown) does, with its message updated to
// count the lost attempt; only if the lease score is still the one observed,
// no live server lists the task, and the message is the one read.
//
// KEYS[1] asynq:{q}:active   KEYS[2] asynq:{q}:lease   KEYS[3] asynq:{q}:pending
// KEYS[4] asynq:{q}:t:<id>   KEYS[5..] asynq:workers:{...} (live servers' task lists)
// ARGV[1] task id   ARGV[2] observed lease score   ARGV[3] message read
// ARGV[4] updated message
var requeueOrphanCmd = redis.NewScript(`
local score = redis.call("ZSCORE", KEYS[2], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then
	return 0
end
for i = 5, #KEYS do
	if redis.call("HEXISTS", KEYS[i], ARGV[1]) == 1 then
		return 0
	end
end
if redis.call("HGET", KEYS[4], "msg") ~= ARGV[3] then
	return 0
end
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
	return 0
end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[4], "msg", ARGV[4], "state", "pending")
redis.call("RPUSH", KEYS[3], ARGV[1])
return 1`)

func (s *Sweeper) requeue(ctx context.Context, queue, id string, lease float64, workerKeys []string, now time.Time) (bool, error) {
	taskKey := asynqQueueKey(queue, "t:"+id)
	msg, err := s.cfg.Redis.HGet(ctx, taskKey, "msg").Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil // gone meanwhile
	}
	if err != nil {
		return false, err
	}
	updated, retried, maxRetry, err := countLostAttempt(msg, orphanError, now)
	if err != nil {
		// Not a message we can read: leave it to asynq's recoverer.
		s.cfg.Log.WithError(err).WithField("job_id", id).Warn("orphaned task left to asynq's recoverer")
		return false, nil
	}
	if retried >= maxRetry {
		// Its last attempt was lost: asynq's recoverer archives it as failed.
		return false, nil
	}
	keys := append([]string{
		asynqQueueKey(queue, "active"), asynqQueueKey(queue, "lease"),
		asynqQueueKey(queue, "pending"), taskKey,
	}, workerKeys...)
	n, err := requeueOrphanCmd.Run(ctx, s.cfg.Redis, keys, id, lease, msg, updated).Int()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// asynq's TaskMessage fields (internal/proto/asynq.proto) the sweeper updates.
const (
	fieldRetry        protowire.Number = 5
	fieldRetried      protowire.Number = 6
	fieldErrorMsg     protowire.Number = 7
	fieldLastFailedAt protowire.Number = 11
)

// countLostAttempt returns asynq's encoded task message with one more retry
// used, errMsg as its last error and now as its last failure, as asynq's
// recoverer records a lost attempt; and the retry count and limit it had.
// Other fields are copied byte for byte.
func countLostAttempt(msg []byte, errMsg string, now time.Time) (out []byte, retried, maxRetry int64, err error) {
	b := msg
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, 0, 0, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, 0, 0, protowire.ParseError(m)
		}
		switch num {
		case fieldRetry, fieldRetried:
			if typ != protowire.VarintType {
				return nil, 0, 0, fmt.Errorf("task message field %d has wire type %d", num, typ)
			}
			v, _ := protowire.ConsumeVarint(b[n:])
			if num == fieldRetry {
				maxRetry = int64(int32(v))
				out = append(out, b[:n+m]...)
			} else {
				retried = int64(int32(v))
			}
		case fieldErrorMsg, fieldLastFailedAt:
			// replaced below
		default:
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	out = protowire.AppendTag(out, fieldRetried, protowire.VarintType)
	out = protowire.AppendVarint(out, uint64(retried+1))
	out = protowire.AppendTag(out, fieldErrorMsg, protowire.BytesType)
	out = protowire.AppendString(out, errMsg)
	out = protowire.AppendTag(out, fieldLastFailedAt, protowire.VarintType)
	out = protowire.AppendVarint(out, uint64(now.Unix()))
	return out, retried, maxRetry, nil
}
