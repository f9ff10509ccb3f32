package events

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// The subscriber's Redis scripts; each key is touched only by its owner's
// value, so a process that lost the lease (or a connection that ended)
// cannot undo its successor's state.
var (
	// extendScript extends KEYS[1] if it still holds ARGV[1] (the lease and
	// this process, events:live and this generation): 1, else 0.
	extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)
	// deleteScript deletes KEYS[1] if it still holds ARGV[1].
	deleteScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
	// advanceScript moves the cursor forward only: a backfill's overlap and
	// out-of-order live events never take it back.
	advanceScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'us') or '-1')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'us', ARGV[1], 'occurred', ARGV[2], 'id', ARGV[3])
  return 1
end
return 0`)
)

// acquire takes the lease if nobody holds it; expires is when it runs out
// at the latest (counted from before the request, so never later than in
// Redis).
func (s *Subscriber) acquire(ctx context.Context) (won bool, expires time.Time, err error) {
	start := time.Now()
	won, err = s.cfg.Redis.SetNX(ctx, KeyLease, s.id, s.cfg.LeaseTTL).Result()
	return won, start.Add(s.cfg.LeaseTTL), err
}

// keepLease renews the lease every RenewEvery until ctx ends. It calls lost
// — a holder that lost its lease stops reading at once — when a renewal
// finds another holder, or when the lease is about to run out without a
// renewal Redis confirmed (Redis unreachable): it stops before another worker
// can take the lease, so two never read at once.
func (s *Subscriber) keepLease(ctx context.Context, expires time.Time, lost context.CancelFunc) {
	margin := s.cfg.RenewEvery / 2
	tick := time.NewTicker(s.cfg.RenewEvery)
	defer tick.Stop()
	for {
		deadline := time.NewTimer(time.Until(expires.Add(-margin)))
		select {
		case <-ctx.Done():
			deadline.Stop()
			return
		case <-deadline.C:
			s.cfg.Log.Warn("events: could not renew the subscriber lease before it ran out; stopped reading")
			lost()
			return
		case <-tick.C:
			deadline.Stop()
		}
		start := time.Now()
		rctx, cancel := context.WithDeadline(ctx, expires.Add(-margin))
		held, err := extendScript.Run(rctx, s.cfg.Redis, []string{KeyLease}, s.id, s.cfg.LeaseTTL.Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && held == 1:
			expires = start.Add(s.cfg.LeaseTTL)
		case err == nil:
			s.cfg.Log.Warn("events: lost the subscriber lease to another worker; stopped reading")
			lost()
			return
		}
		// An error (a Redis blip): try again at the next tick, until the
		// deadline.
	}
}
