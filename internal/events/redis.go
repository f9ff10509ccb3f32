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

// acquire takes the lease if nobody holds it.
func (s *Subscriber) acquire(ctx context.Context) (bool, error) {
	return s.cfg.Redis.SetNX(ctx, KeyLease, s.id, s.cfg.LeaseTTL).Result()
}

// keepLease renews the lease every RenewEvery until ctx ends. When the lease
// is gone (another holder, or expired while Redis did not answer) it calls
// lost: a holder that lost its lease stops reading at once.
func (s *Subscriber) keepLease(ctx context.Context, lost context.CancelFunc) {
	t := time.NewTicker(s.cfg.RenewEvery)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RenewEvery)
		held, err := extendScript.Run(rctx, s.cfg.Redis, []string{KeyLease}, s.id, s.cfg.LeaseTTL.Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && held == 1:
			lastOK = time.Now()
			continue
		case err == nil:
			s.cfg.Log.Warn("events: lost the subscriber lease to another worker; stopped reading")
		case time.Since(lastOK) < s.cfg.LeaseTTL-s.cfg.RenewEvery:
			continue // Redis blip: the lease still holds; try again
		default:
			s.cfg.Log.WithError(err).Warn("events: cannot renew the subscriber lease; stopped reading")
		}
		lost()
		return
	}
}
