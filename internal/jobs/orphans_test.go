package jobs

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// fakeClock is a Sweeper's clock that only moves when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// orphanRig is a real redis-server holding one task in the state a worker
// process leaves it in when it dies mid-task: in asynq's active list, with a
// lease, and listed by no live server.
type orphanRig struct {
	rdb   redis.UniversalClient
	ins   *asynq.Inspector
	clock *fakeClock
	id    string
	lease time.Time
}

const orphanQueue = "critical"

func newOrphanRig(t *testing.T, maxRetry int) *orphanRig {
	t.Helper()
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	client := asynq.NewClientFromRedisClient(rdb)
	info, err := client.Enqueue(asynq.NewTask("flow_run.create", []byte("sealed payload")),
		asynq.Queue(orphanQueue), asynq.MaxRetry(maxRetry), asynq.TaskID("job-1"))
	if err != nil {
		t.Fatal(err)
	}
	r := &orphanRig{rdb: rdb, ins: asynq.NewInspectorFromRedisClient(rdb), id: info.ID,
		clock: &fakeClock{now: time.Now()}, lease: time.Now().Add(30 * time.Second)}
	// What asynq's dequeue script does; the worker then dies before its
	// heartbeat lists the task.
	ctx := context.Background()
	if err := rdb.LMove(ctx, asynqQueueKey(orphanQueue, "pending"), asynqQueueKey(orphanQueue, "active"), "RIGHT", "LEFT").Err(); err != nil {
		t.Fatal(err)
	}
	rdb.HSet(ctx, asynqQueueKey(orphanQueue, "t:"+r.id), "state", "active")
	rdb.ZAdd(ctx, asynqQueueKey(orphanQueue, "lease"), redis.Z{Score: float64(r.lease.Unix()), Member: r.id})
	return r
}

func (r *orphanRig) sweeper() *Sweeper {
	return NewSweeper(SweeperConfig{Redis: r.rdb, Silence: 12 * time.Second, Now: r.clock.Now})
}

// listByLiveServer writes what a live asynq server's heartbeat writes for a
// task it runs.
func (r *orphanRig) listByLiveServer(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	key := "asynq:workers:{host:42:server-1}"
	r.rdb.ZAdd(ctx, asynqAllWorkers, redis.Z{Score: float64(time.Now().Add(10 * time.Second).Unix()), Member: key})
	if err := r.rdb.HSet(ctx, key, r.id, "worker info").Err(); err != nil {
		t.Fatal(err)
	}
	r.rdb.Expire(ctx, key, 10*time.Second)
}

func (r *orphanRig) extendLease(t *testing.T) {
	t.Helper()
	r.lease = r.lease.Add(5 * time.Second)
	if err := r.rdb.ZAddXX(context.Background(), asynqQueueKey(orphanQueue, "lease"),
		redis.Z{Score: float64(r.lease.Unix()), Member: r.id}).Err(); err != nil {
		t.Fatal(err)
	}
}

func (r *orphanRig) sweep(t *testing.T, s *Sweeper) int {
	t.Helper()
	n, err := s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (r *orphanRig) state(t *testing.T) *asynq.TaskInfo {
	t.Helper()
	info, err := r.ins.GetTaskInfo(orphanQueue, r.id)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestSweeper(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	cases := []struct {
		name     string
		maxRetry int
		// act runs between the first sweep (which sees the task) and the
		// sweep one silence later; it returns how many that sweep must move.
		act func(t *testing.T, r *orphanRig, s *Sweeper) int
		// requeued: the task ends up pending with the lost attempt counted.
		requeued bool
	}{
		{"a task nobody heartbeats is re-queued after the silence", 3,
			func(*testing.T, *orphanRig, *Sweeper) int { return 1 }, true},
		{"not before the silence has passed", 3,
			func(t *testing.T, r *orphanRig, s *Sweeper) int {
				r.clock.Advance(11 * time.Second)
				if n := r.sweep(t, s); n != 0 {
					t.Fatalf("moved %d after 11 s of silence", n)
				}
				r.clock.Advance(-11 * time.Second)
				return 1
			}, true},
		{"a task listed by a live server is left alone", 3,
			func(t *testing.T, r *orphanRig, _ *Sweeper) int { r.listByLiveServer(t); return 0 }, false},
		{"a lease extended meanwhile restarts the silence", 3,
			func(t *testing.T, r *orphanRig, s *Sweeper) int {
				r.clock.Advance(6 * time.Second)
				r.extendLease(t)
				r.sweep(t, s)
				r.clock.Advance(-6 * time.Second)
				return 0
			}, false},
		{"a lost last attempt is left to asynq's recoverer (it archives it)", 0,
			func(*testing.T, *orphanRig, *Sweeper) int { return 0 }, false},
		{"of two sweepers racing, one moves the task", 3,
			func(t *testing.T, r *orphanRig, _ *Sweeper) int {
				other := r.sweeper()
				r.sweep(t, other)
				r.clock.Advance(12 * time.Second)
				if n := r.sweep(t, other); n != 1 {
					t.Fatalf("the other sweeper moved %d, want 1", n)
				}
				r.clock.Advance(-12 * time.Second)
				return 0
			}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newOrphanRig(t, tc.maxRetry)
			s := r.sweeper()
			if n := r.sweep(t, s); n != 0 {
				t.Fatalf("first sight moved %d tasks", n)
			}
			want := tc.act(t, r, s)
			r.clock.Advance(12 * time.Second)
			if n := r.sweep(t, s); n != want {
				t.Fatalf("moved %d, want %d", n, want)
			}
			info := r.state(t)
			if !tc.requeued {
				if info.State != asynq.TaskStateActive || info.Retried != 0 {
					t.Fatalf("task %s, retried %d; want it left active", info.State, info.Retried)
				}
				return
			}
			if info.State != asynq.TaskStatePending || info.Retried != 1 || info.LastErr != orphanError ||
				info.LastFailedAt.IsZero() || info.MaxRetry != tc.maxRetry || string(info.Payload) != "sealed payload" ||
				info.Type != "flow_run.create" {
				t.Fatalf("re-queued task = %+v; want pending, retried 1, the lost attempt's error, the rest intact", info)
			}
			if n, _ := r.rdb.ZCard(context.Background(), asynqQueueKey(orphanQueue, "lease")).Result(); n != 0 {
				t.Fatalf("%d leases left after the move", n)
			}
		})
	}
}

// A re-queued task runs again on a live asynq server, which sees the lost
// attempt in its retry count.
func TestSweeperRequeuedTaskRuns(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := newOrphanRig(t, 3)
	s := r.sweeper()
	r.sweep(t, s)
	r.clock.Advance(12 * time.Second)
	if n := r.sweep(t, s); n != 1 {
		t.Fatalf("moved %d, want 1", n)
	}
	retried := make(chan int, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc("flow_run.create", func(ctx context.Context, _ *asynq.Task) error {
		n, _ := asynq.GetRetryCount(ctx)
		retried <- n
		return nil
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := NewServer(r.rdb, ServerConfig{Concurrency: 1, ShutdownTimeout: time.Second, Log: log})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case n := <-retried:
		if n != 1 {
			t.Fatalf("re-run sees retry count %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the re-queued task never ran")
	}
}
