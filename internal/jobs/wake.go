package jobs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
)

// WakeChannel is the Redis pub/sub channel on which a process that put a
// task on a queue publishes the queue's name, so idle workers look at once.
const WakeChannel = "prefect-proxy:jobs:wake"

// Wake-ups.
//
// asynq's processor looks for a task by running its dequeue script on each
// of its queues; when all are empty it sleeps TaskCheckInterval and looks
// again. A short interval keeps a synchronous write fast but makes an idle
// worker (and its Redis) busy all the time; a long one makes every write
// wait. Wakeup removes that trade-off without changing asynq:
//
//   - it is a go-redis hook on the process's Redis client. After any of
//     asynq's scripts that puts a task on a queue's pending list (enqueue,
//     the forwarder moving a due retry, a requeue at shutdown, the orphan
//     sweeper, a "run now" in /monitoring/) it publishes the queue's name on
//     WakeChannel;
//   - every worker process subscribes to WakeChannel. When a server's
//     dequeue script has found every one of its queues empty, with no
//     wake-up for them since each was looked at, the hook holds that last
//     "empty" answer until a wake-up for one of its queues arrives (then it
//     runs the script again, so the task starts at once) or until the idle
//     interval has passed (then asynq looks again as usual).
//
// An idle worker therefore looks at its queues once per idle interval
// instead of hundreds of times a second, and a task starts within a Redis
// round trip or two of being queued. A lost wake-up (pub/sub is fire and
// forget: a reconnect, a producer without the hook) costs at most one idle
// interval.
type Wakeup struct {
	rdb redis.UniversalClient
	log logrus.FieldLogger

	mu     sync.Mutex
	queues map[string]*queueWake
	ps     *redis.PubSub
	closed chan struct{}
	once   sync.Once
	subbed chan struct{} // closed when the subscriber goroutine ends
}

// wakeGroup is the queues of one asynq server: its processor is idle when
// all of them are empty.
type wakeGroup struct {
	queues []string
	idle   time.Duration
	// changed is closed (and replaced) on a wake-up for any of the queues.
	changed chan struct{}
}

type queueWake struct {
	group *wakeGroup
	gen   uint64 // wake-ups seen for this queue
	// empty: the last look found the queue empty, when gen was emptyAt.
	empty   bool
	emptyAt uint64
}

// NewWakeup installs the hook on rdb: from now on every task this client
// puts on a queue is announced. Watch makes the process listen too. Call it
// once per client, before the client is shared.
func NewWakeup(rdb redis.UniversalClient, log logrus.FieldLogger) *Wakeup {
	if log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		log = l
	}
	w := &Wakeup{rdb: rdb, log: log, queues: map[string]*queueWake{}, closed: make(chan struct{})}
	rdb.AddHook(w)
	return w
}

// Watch registers the queues of one asynq server: while all of them are
// empty, its dequeue waits for a wake-up, at most idle. It subscribes to
// WakeChannel on first use.
func (w *Wakeup) Watch(ctx context.Context, queues []string, idle time.Duration) {
	g := &wakeGroup{queues: queues, idle: idle, changed: make(chan struct{})}
	w.mu.Lock()
	for _, q := range queues {
		w.queues[q] = &queueWake{group: g}
	}
	start := w.ps == nil
	if start {
		w.ps = w.rdb.Subscribe(ctx, WakeChannel)
		w.subbed = make(chan struct{})
	}
	ps := w.ps
	w.mu.Unlock()
	if !start {
		return
	}
	// Wait for the confirmation so a task queued right after start-up is
	// not missed; if Redis is slow to answer, the idle interval covers it.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := ps.Receive(rctx); err != nil {
		w.log.WithError(err).Warn("jobs: cannot subscribe to wake-ups yet; idle workers look every WORKER_POLL_INTERVAL meanwhile")
	}
	cancel()
	go func() {
		defer close(w.subbed)
		// A dead subscription is noticed by a PING every 15 s (go-redis's
		// default, 3 s, is an idle cost of its own); meanwhile the idle
		// interval finds the tasks.
		for msg := range ps.Channel(redis.WithChannelHealthCheckInterval(15 * time.Second)) {
			w.wake(msg.Payload)
		}
	}()
}

// Close stops listening and releases any dequeue waiting for a wake-up;
// from then on dequeues never wait. The hook stays (it keeps announcing).
func (w *Wakeup) Close() {
	w.once.Do(func() {
		close(w.closed)
		w.mu.Lock()
		ps, done := w.ps, w.subbed
		w.mu.Unlock()
		if ps != nil {
			_ = ps.Close()
			<-done
		}
	})
}

// wake records a wake-up for queue and releases its group's waiter.
func (w *Wakeup) wake(queue string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.queues[queue]
	if st == nil {
		return
	}
	st.gen++
	close(st.group.changed)
	st.group.changed = make(chan struct{})
}

// DialHook implements redis.Hook.
func (w *Wakeup) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook: asynq runs its queue scripts
// one at a time, never in a pipeline.
func (w *Wakeup) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook.
func (w *Wakeup) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		kind, queue := classify(cmd.Args())
		switch kind {
		case scriptDequeue:
			return w.dequeue(ctx, cmd, queue, next)
		case scriptForward:
			if nothingDue(ctx, cmd, next) {
				return nil
			}
			fallthrough
		case scriptPush:
			err := next(ctx, cmd)
			if err == nil && pushed(cmd) {
				w.announce(ctx, queue)
			}
			return err
		}
		return next(ctx, cmd)
	}
}

// announce publishes a wake-up for queue. A failure only delays the task
// until the next idle look.
func (w *Wakeup) announce(ctx context.Context, queue string) {
	if err := w.rdb.Publish(context.WithoutCancel(ctx), WakeChannel, queue).Err(); err != nil {
		w.log.WithError(err).WithField("queue", queue).Debug("jobs: wake-up not published")
	}
}

// dequeue runs asynq's dequeue script for queue and, when it finds the
// queue empty and the whole group idle, waits as described on Wakeup.
func (w *Wakeup) dequeue(ctx context.Context, cmd redis.Cmder, queue string, next redis.ProcessHook) error {
	w.mu.Lock()
	st := w.queues[queue]
	var before uint64
	if st != nil {
		before = st.gen
	}
	w.mu.Unlock()
	err := next(ctx, cmd)
	if st == nil {
		return err
	}
	g, changed, idle := w.record(st, before, errors.Is(err, redis.Nil))
	if !idle {
		return err
	}
	t := time.NewTimer(g.idle)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
		return err
	case <-w.closed:
		return err
	case <-ctx.Done():
		return err
	}
	w.mu.Lock()
	now := st.gen
	w.mu.Unlock()
	c, ok := cmd.(*redis.Cmd)
	if now == st.emptyAt || !ok {
		// Another of the group's queues has work: asynq looks at all of
		// them again after its short TaskCheckInterval.
		return err
	}
	again := redis.NewCmd(ctx, cmd.Args()...)
	err = next(ctx, again)
	c.SetVal(again.Val())
	c.SetErr(again.Err())
	w.record(st, now, errors.Is(err, redis.Nil))
	return err
}

// record notes what a look at st's queue found (empty or not, as of
// generation gen) and reports whether the queue's whole group is now idle:
// every queue found empty with no wake-up since.
func (w *Wakeup) record(st *queueWake, gen uint64, empty bool) (g *wakeGroup, changed chan struct{}, idle bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st.empty, st.emptyAt = empty, gen
	g = st.group
	if !empty {
		return g, nil, false
	}
	select {
	case <-w.closed:
		return g, nil, false
	default:
	}
	for _, q := range g.queues {
		o := w.queues[q]
		if o == nil || o.group != g || !o.empty || o.emptyAt != o.gen {
			return g, nil, false
		}
	}
	return g, g.changed, true
}

// Kinds of Redis command the hook cares about.
const (
	scriptOther   = iota
	scriptDequeue // asynq's dequeue: KEYS pending, paused, active, lease
	scriptPush    // any script with a queue's pending list among its keys
	scriptForward // asynq's forwarder: KEYS retry (or scheduled), pending
)

// classify recognises asynq's scripts by their keys (asynq:{<queue>}:pending
// and so on, the names asynq documents and our KEDA manifests rely on too).
func classify(args []any) (kind int, queue string) {
	if len(args) < 3 {
		return scriptOther, ""
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return scriptOther, ""
	}
	n, ok := numKeys(args[2])
	if !ok || n <= 0 || len(args) < 3+n {
		return scriptOther, ""
	}
	return classifyKeys(args[3:3+n], len(args)-3-n)
}

// classifyKeys classifies a script by its keys and its number of arguments.
func classifyKeys(keys []any, nargv int) (kind int, queue string) {
	at := func(i int) string { s, _ := keys[i].(string); return s }
	for i := range keys {
		q, ok := queueOf(at(i), "pending")
		switch {
		case !ok:
			continue
		case i == 0 && len(keys) == 4 && at(1) == asynqQueueKey(q, "paused"):
			return scriptDequeue, q
		case i == 1 && len(keys) == 2 && nargv > 0 &&
			(at(0) == asynqQueueKey(q, "retry") || at(0) == asynqQueueKey(q, "scheduled")):
			return scriptForward, q
		}
		return scriptPush, q
	}
	return scriptOther, ""
}

func numKeys(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case string:
		i, err := strconv.Atoi(n)
		return i, err == nil
	}
	return 0, false
}

// queueOf parses asynq:{<queue>}:<suffix>.
func queueOf(key, suffix string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "asynq:{")
	if !ok {
		return "", false
	}
	q, ok := strings.CutSuffix(rest, "}:"+suffix)
	return q, ok && q != ""
}

// nothingDue answers asynq's forward script (KEYS: a retry or scheduled
// set, the pending list; ARGV[1]: now in unix seconds) without running it
// when no task in the set is due: a ZCOUNT instead of a Lua script, which
// the forwarder runs for every queue every second, busy or not (and which
// the embedded Redis interprets in the api process). It reports false when
// the script must run.
func nothingDue(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) bool {
	c, ok := cmd.(*redis.Cmd)
	if !ok {
		return false
	}
	args := cmd.Args()
	count := redis.NewIntCmd(ctx, "zcount", args[3], "-inf", args[5])
	if err := next(ctx, count); err != nil || count.Val() > 0 {
		return false
	}
	c.SetVal(int64(0))
	c.SetErr(nil)
	return true
}

// pushed reports whether a script that may put a task on a pending list
// did: asynq's scripts answer 0 (or -1) when they moved nothing, a count or
// "OK" when they did.
func pushed(cmd redis.Cmder) bool {
	c, ok := cmd.(*redis.Cmd)
	if !ok {
		return true
	}
	switch v := c.Val().(type) {
	case int64:
		return v > 0
	case nil:
		return false
	}
	return true
}
