package runcache

import "github.com/redis/go-redis/v9"

// The cache's Redis scripts: each step that must not interleave with
// another process's is one script. Times are Redis's own clock (TIME), so
// every api and worker process compares the same clock.

// lookupScript: KEYS live[, entry]. An entry's value is
// "<generation>\n<fingerprint>\n<body>".
// → {"off"} when the stream is not live; {"hit", body} when the entry was
// stored in the live generation; else {"miss", generation, now in µs}, plus
// the fingerprint and body of an entry from an older generation.
var lookupScript = redis.NewScript(`
local live = redis.call('GET', KEYS[1])
if not live then return {'off'} end
local t = redis.call('TIME')
local miss = {'miss', live, t[1] .. string.format('%06d', tonumber(t[2]))}
if not KEYS[2] then return miss end
local v = redis.call('GET', KEYS[2])
if not v then return miss end
local a = string.find(v, '\n', 1, true)
if not a then return miss end
local b = string.find(v, '\n', a + 1, true)
if not b then return miss end
if string.sub(v, 1, a - 1) == live then return {'hit', string.sub(v, b + 1)} end
table.insert(miss, string.sub(v, a + 1, b - 1))
table.insert(miss, string.sub(v, b + 1))
return miss
`)

// dropFn removes entry k from the index, the sizes and the total, and
// deletes it. KEYS[idx], KEYS[sizes], KEYS[total] are given by position.
const dropFn = `
local function drop(k, idx, sizes, total)
  local sz = redis.call('HGET', sizes, k)
  if sz then
    redis.call('DECRBY', total, sz)
    redis.call('HDEL', sizes, k)
  end
  redis.call('ZREM', idx, k)
  redis.call('DEL', k)
end
`

// storeScript: KEYS live, entry, run set, run's last event, index, sizes,
// total, run's newest event time; ARGV generation, snapshot µs, value, ttl
// ms, max entries, max bytes, the read's run state timestamp µs.
// → {"stale"} when the stream left the generation, {"raced"} when a state
// event of the run came after the snapshot or the read shows a state older
// than the run's newest event (Prefect publishes the event before it commits
// the state), else {"stored", evicted keys...}.
// Entries past their TTL leave the index; then the oldest are evicted until
// both bounds hold.
var storeScript = redis.NewScript(dropFn + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'stale'} end
local inv = redis.call('GET', KEYS[4])
if inv and tonumber(inv) >= tonumber(ARGV[2]) then return {'raced'} end
local at = redis.call('GET', KEYS[8])
if at and tonumber(ARGV[7]) < tonumber(at) then return {'raced'} end
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
drop(KEYS[2], KEYS[5], KEYS[6], KEYS[7])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
redis.call('HSET', KEYS[6], KEYS[2], #ARGV[3])
redis.call('INCRBY', KEYS[7], #ARGV[3])
redis.call('ZADD', KEYS[5], now, KEYS[2])
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('PEXPIRE', KEYS[3], ttl)
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - ttl)) do
  drop(k, KEYS[5], KEYS[6], KEYS[7])
end
local out = {'stored'}
while redis.call('ZCARD', KEYS[5]) > tonumber(ARGV[5]) or tonumber(redis.call('GET', KEYS[7]) or '0') > tonumber(ARGV[6]) do
  local k = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
  if not k then break end
  drop(k, KEYS[5], KEYS[6], KEYS[7])
  table.insert(out, k)
end
return out
`)

// invalidateScript: KEYS run set, run's last event, index, sizes, total,
// run's newest event time; ARGV ttl ms, the event's time µs (0: none).
// Records now as the run's last event (reads that began before cannot
// store), the event's time if it is the newest, and drops the run's
// entries. → the entries that were live.
var invalidateScript = redis.NewScript(dropFn + `
local t = redis.call('TIME')
redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), 'PX', ARGV[1])
local at = tonumber(ARGV[2])
if at > 0 and at > tonumber(redis.call('GET', KEYS[6]) or '0') then
  redis.call('SET', KEYS[6], ARGV[2], 'PX', ARGV[1])
end
local out = {}
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', k) == 1 then table.insert(out, k) end
  drop(k, KEYS[3], KEYS[4], KEYS[5])
end
redis.call('DEL', KEYS[1])
return out
`)
