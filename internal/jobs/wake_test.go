package jobs

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// wakeRedis is where the wake-up tests run: miniredis (the embedded mode's
// Redis) and a real redis-server.
var wakeRedis = []struct {
	name  string
	start func(t *testing.T) string
}{
	{"miniredis", func(t *testing.T) string { return "redis://" + miniredis.RunT(t).Addr() }},
	{"redis-server", func(t *testing.T) string { return testenv.Redis(t) }},
}

// onEachRedis runs f as a parallel subtest on each of wakeRedis.
func onEachRedis(t *testing.T, f func(t *testing.T, url string)) {
	for _, r := range wakeRedis {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			f(t, r.start(t))
		})
	}
}

// apiQueue is the api's side: its own client with its own Wakeup, which
// only announces.
func apiQueue(t *testing.T, url string) *asynq.Client {
	api := connectT(t, url)
	NewWakeup(api, quietLog())
	return asynq.NewClientFromRedisClient(api)
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func connectT(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	rdb, err := Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// scriptCounter counts the dequeue scripts that reach Redis.
type scriptCounter struct{ dequeues atomic.Int64 }

func (c *scriptCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *scriptCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (c *scriptCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if k, _ := classify(cmd.Args()); k == scriptDequeue {
			c.dequeues.Add(1)
		}
		return next(ctx, cmd)
	}
}

// wakeWorker starts an asynq server with a Wakeup whose idle interval is
// an hour, so a task can only start because it was announced. handler
// runs each task.
func wakeWorker(t *testing.T, url string, handler asynq.HandlerFunc) (*Wakeup, *scriptCounter) {
	t.Helper()
	rdb := connectT(t, url)
	wu := NewWakeup(rdb, quietLog())
	counter := &scriptCounter{}
	rdb.AddHook(counter)
	srv := NewServer(rdb, ServerConfig{Concurrency: 2, Log: quietLog(), Wakeup: wu, PollInterval: time.Hour,
		ShutdownTimeout: time.Second, RetryDelay: func(int, error, *asynq.Task) time.Duration { return 0 }})
	if err := srv.Start(handler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		wu.Close()
		srv.Shutdown()
	})
	return wu, counter
}

// waitFor fails the test unless ch yields within a generous bound (the
// idle interval is an hour: only a wake-up can make it in time).
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not within 30 s although the worker was woken", what)
		panic("unreachable")
	}
}

func TestWakeupStartsQueuedTaskFromAnotherProcess(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, url string) {
		started := make(chan string, 10)
		wakeWorker(t, url, func(_ context.Context, tk *asynq.Task) error {
			started <- string(tk.Payload())
			return nil
		})
		cl := apiQueue(t, url)
		for i, q := range []string{QueueCritical, QueueDefault, QueueCritical} {
			time.Sleep(50 * time.Millisecond) // the worker is idle, waiting
			payload := string(rune('a' + i))
			if _, err := cl.Enqueue(asynq.NewTask("t", []byte(payload)), asynq.Queue(q)); err != nil {
				t.Fatal(err)
			}
			if got := waitFor(t, started, "task on "+q); got != payload {
				t.Fatalf("started %q, want %q", got, payload)
			}
		}
	})
}

func TestWakeupRetriesMovedByTheForwarderStart(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, url string) {
		attempts := make(chan int, 10)
		var n atomic.Int64
		wakeWorker(t, url, func(context.Context, *asynq.Task) error {
			attempts <- int(n.Add(1))
			if n.Load() == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		})
		if _, err := apiQueue(t, url).Enqueue(asynq.NewTask("t", nil), asynq.Queue(QueueDefault), asynq.MaxRetry(3)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, attempts, "first attempt")
		// The retry sits in the retry set until the forwarder moves it;
		// that move must wake the (otherwise hour-long) idle processor.
		waitFor(t, attempts, "retry")
	})
}

func TestWakeupIdleWorkerLooksOncePerInterval(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, url string) {
		rdb := connectT(t, url)
		wu := NewWakeup(rdb, quietLog())
		counter := &scriptCounter{}
		rdb.AddHook(counter)
		queues := map[string]int{QueueCritical: 2, QueueDefault: 1}
		srv := NewServer(rdb, ServerConfig{Concurrency: 1, Log: quietLog(), Wakeup: wu,
			PollInterval: 100 * time.Millisecond, ShutdownTimeout: time.Second, Queues: queues})
		if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown()
		defer wu.Close()
		time.Sleep(time.Second)
		// About 10 looks of 2 scripts; polling every few milliseconds
		// would be hundreds. A busy machine only makes it fewer.
		if got := counter.dequeues.Load(); got > 60 {
			t.Fatalf("%d dequeue scripts in 1 s with a 100 ms idle interval", got)
		}
	})
}

func TestWakeupCloseReleasesAnIdleWorker(t *testing.T) {
	t.Parallel()
	rdb := connectT(t, "redis://"+miniredis.RunT(t).Addr())
	wu := NewWakeup(rdb, quietLog())
	srv := NewServer(rdb, ServerConfig{Concurrency: 1, Log: quietLog(), Wakeup: wu, PollInterval: time.Hour, ShutdownTimeout: time.Second})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // waiting for a wake-up now
	done := make(chan struct{})
	go func() {
		wu.Close()
		srv.Shutdown()
		close(done)
	}()
	waitFor(t, done, "shutdown of an idle worker")
}

func TestClassify(t *testing.T) {
	t.Parallel()
	dequeue := []any{"evalsha", "sha", 4, "asynq:{critical}:pending", "asynq:{critical}:paused",
		"asynq:{critical}:active", "asynq:{critical}:lease", int64(1), "asynq:{critical}:t:"}
	cases := []struct {
		name      string
		args      []any
		kind      int
		wantQueue string
	}{
		{"dequeue", dequeue, scriptDequeue, "critical"},
		{"dequeue through EVAL (script not cached)", append([]any{"eval", "src"}, dequeue[2:]...), scriptDequeue, "critical"},
		{"enqueue", []any{"evalsha", "sha", 2, "asynq:{default}:t:1", "asynq:{default}:pending", "msg", "1", int64(0)}, scriptPush, "default"},
		{"forward from retry", []any{"evalsha", "sha", 2, "asynq:{relay}:retry", "asynq:{relay}:pending", int64(1), "asynq:{relay}:t:", int64(1), "asynq:{relay}:g:"}, scriptForward, "relay"},
		{"forward from scheduled", []any{"evalsha", "sha", 2, "asynq:{q}:scheduled", "asynq:{q}:pending", int64(1), "asynq:{q}:t:", int64(1), "asynq:{q}:g:"}, scriptForward, "q"},
		{"requeue", []any{"evalsha", "sha", 4, "asynq:{default}:active", "asynq:{default}:lease", "asynq:{default}:pending", "asynq:{default}:t:1", "1"}, scriptPush, "default"},
		{"numkeys as a string", []any{"EVALSHA", "sha", "2", "asynq:{q}:t:1", "asynq:{q}:pending"}, scriptPush, "q"},
		{"script without a pending list", []any{"evalsha", "sha", 1, "asynq:{default}:retry"}, scriptOther, ""},
		{"pending list among the arguments, not the keys", []any{"evalsha", "sha", 1, "k", "asynq:{q}:pending"}, scriptOther, ""},
		{"plain command on a pending list", []any{"lpush", "asynq:{q}:pending", "x"}, scriptOther, ""},
		{"short", []any{"evalsha"}, scriptOther, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			kind, q := classify(c.args)
			if kind != c.kind || q != c.wantQueue {
				t.Fatalf("classify = %d %q, want %d %q", kind, q, c.kind, c.wantQueue)
			}
		})
	}
}
