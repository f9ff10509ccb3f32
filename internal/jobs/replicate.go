package jobs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/retry"
)

// Replication makes an acknowledgement survive the loss of the Redis primary.
// Redis replicates asynchronously: a job the primary accepted a moment before
// it died may never reach the replica Sentinel promotes. Confirm closes that
// window with Redis's WAIT: it returns once the write has reached Replicas
// replicas (or every connected replica when fewer are connected; at once when
// none is), and fails otherwise, so the caller answers 503 instead of an
// acknowledgement it cannot keep.
type Replication struct {
	rdb      redis.UniversalClient
	replicas int
	timeout  time.Duration
}

// ErrNotReplicated is a write Redis accepted but could not show to be on
// enough replicas (or no longer holds, after a failover).
var ErrNotReplicated = errors.New("redis: the write is not confirmed on a replica")

// NewReplication confirms writes made through rdb on up to replicas replicas
// (REDIS_WAIT_REPLICAS; 0: Confirm does nothing), waiting at most timeout
// (REDIS_WAIT_TIMEOUT).
func NewReplication(rdb redis.UniversalClient, replicas int, timeout time.Duration) *Replication {
	return &Replication{rdb: rdb, replicas: replicas, timeout: timeout}
}

// replicationMarker is the key every confirmation increments: WAIT counts the
// writes of its own connection, and a write of that connection issued after
// the job's write covers it (a replica's offset covers everything before it).
const replicationMarker = "prefect-proxy:replication-marker"

// confirmScript increments the marker, unless the witness (the key the
// acknowledged write created) is missing: then the write was lost with a
// primary that failed over meanwhile.
var confirmScript = `
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
return 1`

// Confirm waits until the write that created witness (a key; "" for none),
// and every write this process made before the call, is on enough replicas.
func (r *Replication) Confirm(ctx context.Context, witness string) error {
	if r == nil || r.replicas <= 0 {
		return nil
	}
	cl, ok := r.rdb.(*redis.Client)
	if !ok {
		return nil // not one primary (tests on a Ring, say): nothing to wait for
	}
	conn := cl.Conn() // WAIT must run on the connection that wrote
	defer conn.Close()
	check, key := "1", witness
	if witness == "" {
		check, key = "0", replicationMarker
	}
	var role, mark *redis.Cmd
	_, _ = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		role = p.Do(ctx, "ROLE")
		mark = p.Eval(ctx, confirmScript, []string{key, replicationMarker}, check)
		return nil
	})
	if n, err := mark.Int(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	} else if n != 1 {
		return fmt.Errorf("%w: %s is gone (failover)", ErrNotReplicated, witness)
	}
	rv, err := role.Slice()
	var connected int
	switch {
	case err != nil && isServerReply(err):
		// A Redis-compatible server without ROLE reports no replicas.
		connected = 0
	case err != nil:
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	default:
		if connected, err = onlineReplicas(rv); err != nil {
			return fmt.Errorf("%w: %w", ErrNotReplicated, err)
		}
	}
	need := min(r.replicas, connected)
	if need == 0 {
		return nil
	}
	got, err := conn.Wait(ctx, need, r.timeout).Result()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	}
	if int(got) < need {
		return fmt.Errorf("%w: %d of %d replicas within %s", ErrNotReplicated, got, need, r.timeout)
	}
	return nil
}

// onlineReplicas reads ROLE's answer on a primary: ["master", offset,
// [[ip, port, offset], ...]], listing the replicas in sync.
func onlineReplicas(role []any) (int, error) {
	if len(role) < 3 || role[0] != "master" {
		return 0, fmt.Errorf("connected to a %v, not a primary", firstOr(role))
	}
	reps, _ := role[2].([]any)
	return len(reps), nil
}

// isServerReply is an error the server answered (unknown command, say), not
// a connection fault.
func isServerReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

func firstOr(v []any) any {
	if len(v) == 0 {
		return "server with no ROLE"
	}
	return v[0]
}

// TaskKey is the Redis key asynq keeps a task's hash under: the witness that
// an enqueued job exists.
func TaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// Enqueuer is what queues an asynq task (an *asynq.Client).
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Enqueuer makes q's enqueues (the relay ingress's, say) acknowledgements
// that survive a failover: after a task is queued, or found already queued
// (a duplicate id), it is confirmed on the replicas.
func (r *Replication) Enqueuer(q Enqueuer) *ConfirmedEnqueuer {
	return &ConfirmedEnqueuer{q: q, r: r}
}

// ConfirmedEnqueuer is an Enqueuer whose successes are confirmed on replicas.
type ConfirmedEnqueuer struct {
	q Enqueuer
	r *Replication
}

// EnqueueContext queues the task and confirms it (see Replication.Confirm).
func (c *ConfirmedEnqueuer) EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := c.q.EnqueueContext(ctx, task, opts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return info, err
	}
	// No witness: a task without retention (a relay delivery) may be done
	// and deleted by the time it is confirmed. The marker written after the
	// enqueue covers it, on the same primary unless this process stalled
	// through a whole failover between the two (seconds); jobs, which are
	// retained, are also checked for existence (Client.Enqueue).
	if cerr := c.r.Confirm(ctx, ""); cerr != nil {
		return nil, cerr
	}
	return info, err
}

// RefuseCluster fails when the server behind rdb runs in Redis Cluster mode:
// asynq's scripts and the job keys assume one keyspace, so a cluster would
// half-work. Sentinel is the supported way to fail over.
func RefuseCluster(ctx context.Context, rdb redis.UniversalClient) error {
	info, err := rdb.Info(ctx, "cluster").Result()
	if err != nil {
		return nil // an old or embedded server without INFO cluster is not a cluster
	}
	if strings.Contains(info, "cluster_enabled:1") {
		return errors.New("config: REDIS_URL: the server runs in Redis Cluster mode, which is not supported; " +
			"for failover use Redis Sentinel: redis-sentinel://host1:26379,host2:26379,host3:26379?master=<name>")
	}
	return nil
}

// FailoverGrace is how long a worker keeps retrying the Redis write that
// records work already done (a job's answer, a delivered notification) while
// the primary fails over: long enough for Sentinel to promote a replica
// (seconds), short of asynq's 30 s task lease.
const FailoverGrace = 20 * time.Second

// Persist runs write until it succeeds, retrying with backoff for up to
// FailoverGrace (or until ctx ends): work done outside Redis must not be done
// again because its record hit a primary that was failing over. write must be
// idempotent.
func Persist(ctx context.Context, write func(context.Context) error) error {
	within, cancel := context.WithTimeout(ctx, FailoverGrace)
	defer cancel()
	return retry.Do(within, math.MaxInt, retry.Exponential{Base: 50 * time.Millisecond, Max: time.Second},
		func(context.Context) error { return write(ctx) })
}
