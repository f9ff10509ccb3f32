package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Verdict is what the store decides for one delivery attempt.
type Verdict int

const (
	Deliver   Verdict = iota + 1 // go ahead; the per-run lock is held
	Duplicate                    // already delivered, or owned by another task
	Stale                        // older than a terminal state already admitted for the run
	Busy                         // another delivery for the same run is in flight
)

func (v Verdict) String() string {
	switch v {
	case Deliver:
		return "deliver"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	case Busy:
		return "busy"
	}
	return "unknown"
}

// Store keeps the relay's per-run state in Redis. Every key of a run shares
// the hash tag {<run id>}, so the scripts work on Redis Cluster too.
//
//	relay:{run}:seen:<hash>  "owner:<task id>" while a task owns the state change, "done" once delivered
//	relay:{run}:state        hash: term = timestamp (µs) of the newest terminal state admitted,
//	                         last = of the newest state of any kind admitted
//	relay:{run}:lock         task id of the delivery in flight (PX lease)
type Store struct {
	rdb  redis.UniversalClient
	TTL  time.Duration // how long dedupe memory lasts; longer than the 24 h retry window
	Lock time.Duration // lease of the per-run lock; longer than a delivery attempt
}

// NewStore builds a store on rdb.
func NewStore(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, TTL: 7 * 24 * time.Hour, Lock: 30 * time.Second}
}

func seenKey(n Notification) string {
	sum := sha256.Sum256([]byte(DedupeKey(n)))
	return "relay:{" + n.FlowRunID + "}:seen:" + hex.EncodeToString(sum[:12])
}
func stateKey(run string) string { return "relay:{" + run + "}:state" }
func lockKey(run string) string  { return "relay:{" + run + "}:lock" }

// admitScript decides atomically, so any number of workers agree:
//  1. a state change already delivered ("done") or owned by another task is a
//     duplicate;
//  2. a state older than the newest terminal state admitted for the run is
//     stale (a late Running must not overtake Completed; nor may a Failed
//     that a retry already superseded with Completed), and is remembered as
//     done so its duplicates drop too; a newer one is a genuine re-entry (a
//     retried run going Running again) and goes through; likewise a terminal
//     state older than any state already admitted (a late Failed after the
//     re-run's Running would clear the re-run's locks in Django) is stale;
//  3. while another delivery of the same run is in flight the answer is busy,
//     so deliveries of one run reach Django one at a time, in admission order;
//  4. otherwise the task takes ownership and the lock, and a terminal state
//     raises the run's terminal mark.
var admitScript = redis.NewScript(`
local seen = redis.call('GET', KEYS[1])
local me = 'owner:' .. ARGV[1]
if seen and seen ~= me then return 2 end
local term = tonumber(redis.call('HGET', KEYS[2], 'term') or '-1')
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '-1')
local ts = tonumber(ARGV[2])
if ts < term or (ARGV[3] == '0' and ts == term) or (ARGV[3] == '1' and ts < last) then
  redis.call('SET', KEYS[1], 'done', 'EX', ARGV[4])
  return 3
end
local lk = redis.call('GET', KEYS[3])
if lk and lk ~= ARGV[1] then return 4 end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[5])
redis.call('SET', KEYS[1], me, 'EX', ARGV[4])
if ARGV[3] == '1' and ts > term then redis.call('HSET', KEYS[2], 'term', ARGV[2]) end
if ts > last then redis.call('HSET', KEYS[2], 'last', ARGV[2]) end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
`)

// finishScript records the outcome and releases the run's lock if held by us.
var finishScript = redis.NewScript(`
if ARGV[2] == '1' then redis.call('SET', KEYS[1], 'done', 'EX', ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
`)

// Admit asks whether task owner may deliver n now.
func (s *Store) Admit(ctx context.Context, n Notification, owner string) (Verdict, error) {
	term := "0"
	if n.Terminal() {
		term = "1"
	}
	res, err := admitScript.Run(ctx, s.rdb,
		[]string{seenKey(n), stateKey(n.FlowRunID), lockKey(n.FlowRunID)},
		owner, strconv.FormatInt(n.Timestamp.UnixMicro(), 10), term,
		int64(s.TTL/time.Second), int64(s.Lock/time.Millisecond)).Int()
	if err != nil {
		return 0, fmt.Errorf("relay: admit: %w", err)
	}
	switch res {
	case 1:
		return Deliver, nil
	case 2:
		return Duplicate, nil
	case 3:
		return Stale, nil
	case 4:
		return Busy, nil
	}
	return 0, fmt.Errorf("relay: admit: unexpected answer %d", res)
}

// Known reports, for each notification, whether its state change is already
// done (delivered, or dropped as stale) or owned by a task (in flight,
// retrying, or archived as a dead letter). One pipelined round trip.
func (s *Store) Known(ctx context.Context, ns []Notification) ([]bool, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ns))
	for i, n := range ns {
		cmds[i] = pipe.Get(ctx, seenKey(n))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	out := make([]bool, len(ns))
	for i, c := range cmds {
		out[i] = c.Val() != ""
	}
	return out, nil
}

// Finish releases the run's lock; delivered marks the state change done so
// no later task (webhook duplicate, reconciler) sends it again.
func (s *Store) Finish(ctx context.Context, n Notification, owner string, delivered bool) error {
	d := "0"
	if delivered {
		d = "1"
	}
	return finishScript.Run(ctx, s.rdb, []string{seenKey(n), lockKey(n.FlowRunID)},
		owner, d, int64(s.TTL/time.Second)).Err()
}
