package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// primaryWithReplica starts a real primary and, when replica, a real replica
// synced to it.
func primaryWithReplica(tb testing.TB, replica bool) (*testenv.RedisServer, *testenv.RedisServer, *redis.Client) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: needs redis-server")
	}
	p := testenv.RedisFull(tb)
	var r *testenv.RedisServer
	if replica {
		var err error
		_, port, _ := net.SplitHostPort(p.Addr)
		r, err = testenv.StartRedis("--replicaof", "127.0.0.1", port)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(r.Stop)
		deadline := time.Now().Add(15 * time.Second)
		for {
			role, err := testenv.Command(p.Addr, "ROLE")
			if err == nil && len(role) >= 5 { // master, offset, ip, port, offset
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("replica never came online: %v %v", role, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr})
	tb.Cleanup(func() { _ = rdb.Close() })
	return p, r, rdb
}

func TestReplicationConfirm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, alone := primaryWithReplica(t, false)
	_, replica, paired := primaryWithReplica(t, true)
	if err := paired.Set(ctx, "witness", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := alone.Set(ctx, "witness", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		rdb      *redis.Client
		replicas int
		witness  string
		wantErr  bool
	}{
		{"no replica connected: nothing to wait for", alone, 1, "witness", false},
		{"one replica acknowledges", paired, 1, "witness", false},
		{"asking for two with one connected waits for the one", paired, 2, "witness", false},
		{"no witness key needed", paired, 1, "", false},
		{"off", paired, 0, "missing", false},
		{"a witness gone (lost in a failover) is refused", paired, 1, "missing", true},
		{"refused without replicas too", alone, 1, "missing", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := NewReplication(tc.rdb, tc.replicas, time.Second).Confirm(ctx, tc.witness)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrNotReplicated)) {
				t.Fatalf("Confirm = %v, want error %v", err, tc.wantErr)
			}
		})
	}
	t.Run("a replica that does not answer in time is a refusal", func(t *testing.T) {
		if err := replica.Proc().Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = replica.Proc().Signal(syscall.SIGCONT) }()
		start := time.Now()
		err := NewReplication(paired, 1, 300*time.Millisecond).Confirm(ctx, "witness")
		if !errors.Is(err, ErrNotReplicated) {
			t.Fatalf("Confirm with a stopped replica = %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the refusal took %s; it must be bounded by the timeout", d)
		}
	})
}

func TestConfirmedEnqueuer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, rdb := primaryWithReplica(t, true)
	q := NewReplication(rdb, 1, time.Second).Enqueuer(asynq.NewClientFromRedisClient(rdb))
	task := asynq.NewTask("t", []byte("x"))
	if _, err := q.EnqueueContext(ctx, task, asynq.Queue(QueueRelay), asynq.TaskID("abc")); err != nil {
		t.Fatal(err)
	}
	// A duplicate id is still confirmed, and reported as the conflict it is.
	if _, err := q.EnqueueContext(ctx, task, asynq.Queue(QueueRelay), asynq.TaskID("abc")); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("duplicate = %v", err)
	}
	if n, _ := rdb.Exists(ctx, TaskKey(QueueRelay, "abc")).Result(); n != 1 {
		t.Fatalf("TaskKey does not name asynq's task hash")
	}
}

func TestRefuseCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: needs redis-server")
	}
	plain := redis.NewClient(&redis.Options{Addr: testenv.RedisFull(t).Addr})
	defer plain.Close()
	if err := RefuseCluster(context.Background(), plain); err != nil {
		t.Fatalf("a plain server was refused: %v", err)
	}
	cs, err := testenv.StartRedis("--cluster-enabled", "yes")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Stop()
	cluster := redis.NewClient(&redis.Options{Addr: cs.Addr})
	defer cluster.Close()
	err = RefuseCluster(context.Background(), cluster)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") || !strings.Contains(err.Error(), "Cluster") ||
		!strings.Contains(err.Error(), "redis-sentinel://") {
		t.Fatalf("cluster mode: %v", err)
	}
}

// BenchmarkEnqueueConfirm prints what confirming a job on a replica costs:
// an enqueue alone, and an enqueue plus Confirm (ROLE + marker in one round
// trip, then WAIT) on a primary with one replica, both on loopback.
func BenchmarkEnqueueConfirm(b *testing.B) {
	ctx := context.Background()
	_, _, rdb := primaryWithReplica(b, true)
	aq := asynq.NewClientFromRedisClient(rdb)
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("REDIS_WAIT_REPLICAS=%d", replicas), func(b *testing.B) {
			q := NewReplication(rdb, replicas, time.Second).Enqueuer(aq)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := q.EnqueueContext(ctx, asynq.NewTask("bench", []byte("payload")),
					asynq.Queue(QueueDefault), asynq.TaskID(fmt.Sprintf("b%d-%d", replicas, i)), asynq.Retention(time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestConfirmOnAServerWithoutROLE(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t) // no ROLE, no WAIT: nothing to wait for, the witness still counts
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	r := NewReplication(rdb, 1, time.Second)
	_ = mr.Set("witness", "1")
	if err := r.Confirm(context.Background(), "witness"); err != nil {
		t.Fatalf("Confirm = %v", err)
	}
	if err := r.Confirm(context.Background(), "missing"); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("Confirm of a missing witness = %v", err)
	}
}

func TestEnqueueUnconfirmedIsA503NamingTheJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, replica, rdb := primaryWithReplica(t, true)
	op := echoOp("t:confirm", func(context.Context, json.RawMessage, string) (any, error) { return nil, nil })
	// Long enough for a replica still finishing its first sync on a busy
	// machine; the stopped replica below then costs this much.
	c, err := NewClient(ctx, rdb, ClientConfig{Key: testKey(), Ops: registry(op),
		Replication: NewReplication(rdb, 1, 2*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Enqueue(ctx, c, op, any(map[string]any{"a": 1}), EnqueueOptions{}); err != nil {
		t.Fatalf("with the replica in sync: %v", err)
	}
	if err := replica.Proc().Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = replica.Proc().Signal(syscall.SIGCONT) }()
	_, err = Enqueue(ctx, c, op, any(map[string]any{"a": 2}), EnqueueOptions{})
	ae := apperr.From(err)
	if err == nil || ae.Status() != http.StatusServiceUnavailable || ae.Extra["job_id"] == nil || !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("with the replica stopped: %v (%+v)", err, ae)
	}
}
