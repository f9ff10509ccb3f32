// Package runcache answers reads of finished flow runs from Redis instead of
// Prefect. A finished run's poll, final state, graph and logs do not change
// unless the run changes state again, and Prefect's event stream says when
// that happens; so an entry is served only while the stream is connected and
// has been since the entry was stored, and a state event of the run drops its
// entries. The cache is shared by every api process (it lives in the same
// Redis as the job queue) and bounded by its own eviction, not by Redis's
// maxmemory. docs/ARCHITECTURE.md ("Terminal-run cache") explains the rules.
package runcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
)

// LiveKey is the Redis key the event-stream subscriber keeps while it is
// connected and caught up: the connection's generation (a decimal string,
// new at every reconnect), with a short expiry it keeps refreshing, deleted
// on disconnect. Without it nothing is served from the cache.
const LiveKey = "events:live"

// Defaults of Config (RUN_CACHE_MAX_ENTRIES, RUN_CACHE_MAX_BYTES,
// RUN_CACHE_TTL, RUN_CACHE_SETTLE, RUN_CACHE_LOG_GRACE).
const (
	DefaultMaxEntries = 10000
	DefaultMaxBytes   = 64 << 20
	DefaultTTL        = time.Hour
	DefaultSettle     = time.Minute
	DefaultLogGrace   = 5 * time.Minute
)

// Kind names what is cached of a run: one per cached route, plus the
// history's per-run final state name.
type Kind string

// The kinds, also the metrics' "kind" label.
const (
	Poll       Kind = "poll"        // route 22: Prefect's flow run JSON
	FlowRun    Kind = "flow_run"    // route 21: flow run with its final state name
	Graph      Kind = "graph"       // route 28
	Logs       Kind = "logs"        // route 26, per task_run_id/limit/offset
	LogsByNode Kind = "logs_v1"     // route 27
	FinalState Kind = "final_state" // route 19, one run's DBT_TEST_FAILED verdict
)

// Kinds lists every kind, for metrics and tests.
func Kinds() []Kind { return []Kind{Poll, FlowRun, Graph, Logs, LogsByNode, FinalState} }

// wait is how long after a finished run's end an answer of this kind may
// first be stored: Prefect records task-run states from events, after the
// flow run's own state (Settle), and late log lines keep arriving (LogGrace).
func (c *Cache) wait(k Kind) time.Duration {
	switch k {
	case Poll:
		return 0
	case Logs, LogsByNode:
		return c.cfg.LogGrace
	default:
		return c.cfg.Settle
	}
}

// Config bounds the cache. Zero fields take the defaults above.
type Config struct {
	// MaxEntries and MaxBytes bound the cache: past either, the oldest
	// entries are evicted. An answer larger than MaxBytes/8 is not stored.
	MaxEntries int
	MaxBytes   int64
	// TTL is each entry's lifetime: the bound on how long a change Prefect
	// emits no state event for (a run deleted outside the proxy) is missed.
	TTL time.Duration
	// Settle is how long after a run's end its graph, final state name and
	// history verdict may be stored; LogGrace the same for its logs.
	Settle   time.Duration
	LogGrace time.Duration
	// Prefix namespaces the cache's keys (default "runcache:").
	Prefix string
	// Live is the stream's key (default LiveKey).
	Live string
	// Now is the clock compared with a run's end time (default time.Now).
	Now func() time.Time
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Settle <= 0 {
		c.Settle = DefaultSettle
	}
	if c.LogGrace <= 0 {
		c.LogGrace = DefaultLogGrace
	}
	if c.Prefix == "" {
		c.Prefix = "runcache:"
	}
	if c.Live == "" {
		c.Live = LiveKey
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Poller reads a flow run as route 22 answers it (Prefect's JSON, as is).
type Poller interface {
	FlowRunPoll(ctx context.Context, id string) (json.RawMessage, error)
}

// Cache is the terminal-run cache. A nil *Cache is valid and caches nothing.
type Cache struct {
	rdb     redis.UniversalClient
	runs    Poller
	cfg     Config
	log     logrus.FieldLogger
	m       *metrics
	group   singleflight.Group
	opTimer time.Duration // bound on each Redis call
}

// New builds a Cache on rdb. runs reads a flow run's state when the cache
// must know whether the run has finished; its metrics go to reg.
func New(rdb redis.UniversalClient, runs Poller, cfg Config, reg prometheus.Registerer, log logrus.FieldLogger) *Cache {
	return &Cache{rdb: rdb, runs: runs, cfg: cfg.WithDefaults(), log: log, m: newMetrics(reg), opTimer: 2 * time.Second}
}

// Config returns the effective configuration.
func (c *Cache) Config() Config { return c.cfg }

// terminal are Prefect 3's final state types. TimedOut is a FAILED-type
// state, so it is final too; PAUSED and CANCELLING are not.
var terminal = map[string]bool{"COMPLETED": true, "FAILED": true, "CRASHED": true, "CANCELLED": true}

// IsTerminal reports whether a state type is final.
func IsTerminal(stateType string) bool { return terminal[stateType] }

// canonical is the run id as Prefect spells it, or false for a non-UUID.
func canonical(id string) (string, bool) { return validate.CanonicalUUID(id) }

// Snapshot is taken before a read from Prefect begins: the stream's
// generation then, and Redis's clock. An entry from that read is stored only
// if the stream is still in that generation and no state event of the run
// arrived after the snapshot.
type Snapshot struct {
	gen   string
	start string // Redis TIME, microseconds
}

// ok reports whether the stream was live, so that the read may be stored.
func (s Snapshot) ok() bool { return s.gen != "" }

// Answer returns the answer of kind for run id (variant tells apart answers
// of the same kind and run, e.g. a log page's limit and offset): from the
// cache when it holds one stored while the run was finished and the stream
// connected, else from read, storing it when the run has finished. read's
// bytes are the route's answer as written to the client. Concurrent misses
// of one answer share one read. Redis trouble never fails the answer: the
// cache is then bypassed.
func (c *Cache) Answer(ctx context.Context, kind Kind, id, variant string, read func(context.Context) ([]byte, error)) ([]byte, error) {
	run, ok := canonical(id)
	if c == nil || !ok {
		return read(ctx)
	}
	key := c.entryKey(kind, run, variant)
	v, err, _ := c.group.Do(key, func() (any, error) {
		return c.answer(context.WithoutCancel(ctx), kind, run, key, read)
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

func (c *Cache) answer(ctx context.Context, kind Kind, run, key string, read func(context.Context) ([]byte, error)) ([]byte, error) {
	e := c.lookup(ctx, kind, key)
	if e.hit {
		return e.body, nil
	}
	if !e.snap.ok() {
		return read(ctx)
	}
	var fp string
	if kind != Poll && (kind != FlowRun || e.stale) {
		again, final, runFP := c.stateFirst(ctx, kind, run, key, e)
		if again {
			return e.body, nil
		}
		fp = runFP
		if kind != FlowRun && !final {
			// Not final, or a failed read: the route's own read answers
			// (with its own error).
			c.m.miss(kind, "not_final")
			return read(ctx)
		}
	}
	body, err := read(ctx)
	if err != nil {
		return nil, err
	}
	if kind == Poll || kind == FlowRun {
		// The answer holds the run itself, read before anything derived.
		if !c.finishedFor(kind, body) {
			c.m.miss(kind, "not_final")
			return body, nil
		}
		fp = Fingerprint(body)
	}
	c.m.miss(kind, "absent")
	c.store(ctx, kind, run, key, e.snap, fp, body)
	return body, nil
}

// stateFirst reads the run's state (through the cache) before its data is
// read, so that data read after the run was seen finished is final data:
// final reports that, fp is the run's Fingerprint. An entry e of an older
// stream generation whose run is unchanged since is valid again, for the
// price of that one read: it is re-stored and again is true.
func (c *Cache) stateFirst(ctx context.Context, kind Kind, run, key string, e entry) (again, final bool, fp string) {
	poll, err := c.Answer(ctx, Poll, run, "", func(ctx context.Context) ([]byte, error) { return c.runs.FlowRunPoll(ctx, run) })
	if err != nil {
		return false, false, ""
	}
	fp = Fingerprint(poll)
	if e.stale && e.fp != "" && e.fp == fp {
		c.m.revalidations.WithLabelValues(string(kind)).Inc()
		c.store(ctx, kind, run, key, e.snap, e.fp, e.body)
		return true, true, fp
	}
	return false, c.finishedFor(kind, poll), fp
}

// finishedFor reports whether a flow run JSON (route 21 or 22) shows the
// run finished and past kind's wait.
func (c *Cache) finishedFor(kind Kind, run []byte) bool {
	fin, end := finished(run)
	return fin && c.settled(kind, end)
}

// Fingerprint identifies a version of a flow run: its state's id (new at
// every state change), its "updated" time (new at any change) and its
// state's timestamp in µs (stateAt; Prefect always gives it). "" when the
// JSON lacks the state's id or the updated time, which never matches.
func Fingerprint(run []byte) string {
	var r struct {
		Updated string `json:"updated"`
		State   *struct {
			ID        string     `json:"id"`
			Timestamp *time.Time `json:"timestamp"`
		} `json:"state"`
	}
	if json.Unmarshal(run, &r) != nil || r.Updated == "" || r.State == nil || r.State.ID == "" {
		return ""
	}
	if r.State.Timestamp == nil {
		return r.State.ID + " " + r.Updated
	}
	return r.State.ID + " " + r.Updated + " " + strconv.FormatInt(r.State.Timestamp.UnixMicro(), 10)
}

// stateAt is the state timestamp (µs) a Fingerprint holds, 0 if none.
func stateAt(fp string) int64 {
	parts := strings.Split(fp, " ")
	if len(parts) != 3 {
		return 0
	}
	us, _ := strconv.ParseInt(parts[2], 10, 64)
	return us
}

// settled reports whether a run that ended at end is past kind's wait.
func (c *Cache) settled(kind Kind, end time.Time) bool {
	return !end.IsZero() && !c.cfg.Now().Before(end.Add(c.wait(kind)))
}

// finished reads a flow run JSON (route 21 or 22): whether its state is
// final, and when it ended (end_time, else the state's timestamp).
func finished(run []byte) (bool, time.Time) {
	var r struct {
		StateType string     `json:"state_type"`
		EndTime   *time.Time `json:"end_time"`
		State     *struct {
			Type      string     `json:"type"`
			Timestamp *time.Time `json:"timestamp"`
		} `json:"state"`
	}
	if json.Unmarshal(run, &r) != nil {
		return false, time.Time{}
	}
	typ := r.StateType
	var at time.Time
	if r.State != nil {
		typ = r.State.Type
		if r.State.Timestamp != nil {
			at = *r.State.Timestamp
		}
	}
	if r.EndTime != nil {
		at = *r.EndTime
	}
	return IsTerminal(typ), at
}

// EndedRun is a run a listing from Prefect showed in a final state.
type EndedRun struct {
	ID          string
	Ended       time.Time // end_time, or the final state's timestamp
	Fingerprint string    // Fingerprint of the listed run
}

// Begin takes a Snapshot before a read from Prefect (a flow-run listing)
// whose per-run parts Flags may then serve. The zero Snapshot (no stream,
// Redis trouble, nil Cache) caches nothing.
func (c *Cache) Begin(ctx context.Context) Snapshot {
	if c == nil {
		return Snapshot{}
	}
	return c.lookup(context.WithoutCancel(ctx), FinalState, "").snap
}

// Flags returns, for runs listed in a final state by a read that began at
// snap, each run's FinalState verdict: from the cache for the runs it holds
// (an entry of an older stream generation too, when the listing shows the
// run unchanged since), from compute for the others, stored for those past
// the settle time.
func (c *Cache) Flags(ctx context.Context, snap Snapshot, runs []EndedRun, compute func(context.Context, []string) (map[string]bool, error)) (map[string]bool, error) {
	ids := make([]string, 0, len(runs))
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if c == nil || !snap.ok() || len(runs) == 0 {
		return compute(ctx, ids)
	}
	ctx = context.WithoutCancel(ctx)
	keys := make([]string, len(runs))
	for i, r := range runs {
		keys[i] = c.entryKey(FinalState, r.ID, "")
	}
	found, err := c.getMany(ctx, keys)
	if err != nil {
		c.fail("get", err)
		return compute(ctx, ids)
	}
	out := make(map[string]bool, len(runs))
	var missing []string
	var missingRuns []EndedRun
	for i, r := range runs {
		if v, ok := c.heldFlag(ctx, snap, r, keys[i], found); ok {
			out[r.ID] = v
			continue
		}
		missing = append(missing, r.ID)
		missingRuns = append(missingRuns, r)
	}
	if len(missing) == 0 {
		return out, nil
	}
	got, err := compute(ctx, missing)
	if err != nil {
		return nil, err
	}
	for _, r := range missingRuns {
		out[r.ID] = got[r.ID]
		c.storeFlag(ctx, snap, r, got[r.ID])
	}
	return out, nil
}

// heldFlag is run r's verdict when found holds it: stored in the live
// generation, or in an older one with the run unchanged since (re-stored).
func (c *Cache) heldFlag(ctx context.Context, snap Snapshot, r EndedRun, key string, found map[string]held) (failed, ok bool) {
	h, ok := found[key]
	switch {
	case ok && h.gen == snap.gen:
		c.m.hit(FinalState)
	case ok && h.fp != "" && h.fp == r.Fingerprint:
		c.m.revalidations.WithLabelValues(string(FinalState)).Inc()
		c.store(ctx, FinalState, r.ID, key, snap, h.fp, []byte(h.body))
	default:
		return false, false
	}
	return h.body == "1", true
}

// storeFlag stores a run's verdict once the run is past the settle time.
func (c *Cache) storeFlag(ctx context.Context, snap Snapshot, r EndedRun, failed bool) {
	if _, ok := canonical(r.ID); !ok || !c.settled(FinalState, r.Ended) {
		c.m.miss(FinalState, "not_final")
		return
	}
	c.m.miss(FinalState, "absent")
	v := "0"
	if failed {
		v = "1"
	}
	c.store(ctx, FinalState, r.ID, c.entryKey(FinalState, r.ID, ""), snap, r.Fingerprint, []byte(v))
}

// OnStateEvent is called by the event-stream subscriber for every flow-run
// state event. It drops every entry of the run, whatever the new state:
// a run leaving a final state (a retry) must not be served from the cache,
// and neither may a forced change from one final state to another. An error
// is returned when Redis could not be told, so that the subscriber
// reconnects (a new generation, which retires every entry).
//
// occurred is the event's time, which is the new state's timestamp. Prefect
// publishes the event before it commits the state, so a read that begins
// after the event can still see the run's previous state: no answer whose
// run state is older than the newest event's is stored.
func (c *Cache) OnStateEvent(ctx context.Context, runID, stateType string, occurred time.Time) error {
	if c == nil {
		return nil
	}
	c.m.events.WithLabelValues(strings.ToUpper(stateType)).Inc()
	return c.invalidate(ctx, runID, occurred.UnixMicro())
}

// Invalidate drops every entry of a run and makes reads of it that began
// before now unable to store theirs. The proxy's own writes to a run (delete,
// retry) call it too, so their effect is seen before the event arrives.
func (c *Cache) Invalidate(ctx context.Context, runID string) error {
	return c.invalidate(ctx, runID, 0)
}

// invalidate is Invalidate, recording occurred (µs, 0 for none) as the
// run's newest state event's time.
func (c *Cache) invalidate(ctx context.Context, runID string, occurred int64) error {
	if c == nil {
		return nil
	}
	run, ok := canonical(runID)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opTimer)
	defer cancel()
	dropped, err := invalidateScript.Run(ctx, c.rdb,
		[]string{c.runKey(run), c.invKey(run), c.idxKey(), c.sizesKey(), c.totalKey(), c.atKey(run)},
		c.cfg.TTL.Milliseconds(), occurred).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		c.fail("invalidate", err)
		return fmt.Errorf("runcache: invalidating run %s: %w", run, err)
	}
	for _, k := range dropped {
		c.m.invalidations.WithLabelValues(string(c.kindOf(k))).Inc()
	}
	return nil
}

// entry is what lookup found.
type entry struct {
	hit  bool     // body is valid now
	snap Snapshot // for a read from Prefect when not hit (zero: stream not live)
	// stale: body and fp were stored in an older stream generation; valid
	// again if the run's Fingerprint is still fp.
	stale bool
	fp    string
	body  []byte
}

// lookup reads an entry. On a miss it takes the Snapshot for the read from
// Prefect (zero when the stream is not live, a "stream" miss, or Redis
// failed). key "" only snapshots.
func (c *Cache) lookup(ctx context.Context, kind Kind, key string) entry {
	ctx, cancel := context.WithTimeout(ctx, c.opTimer)
	defer cancel()
	keys := []string{c.cfg.Live}
	if key != "" {
		keys = append(keys, key)
	}
	res, err := lookupScript.Run(ctx, c.rdb, keys).Slice()
	if err != nil {
		c.fail("get", err)
		return entry{}
	}
	str := func(i int) string {
		if i < len(res) {
			s, _ := res[i].(string)
			return s
		}
		return ""
	}
	switch str(0) {
	case "hit":
		c.m.hit(kind)
		return entry{hit: true, body: []byte(str(1))}
	case "miss":
		e := entry{snap: Snapshot{gen: str(1), start: str(2)}}
		if len(res) == 5 {
			e.stale, e.fp, e.body = true, str(3), []byte(str(4))
		}
		return e
	default: // the stream is not live
		if key != "" {
			c.m.miss(kind, "stream")
		}
		return entry{}
	}
}

// held is an entry of getMany.
type held struct {
	gen, fp, body string
}

// getMany reads entries (absent ones are left out).
func (c *Cache) getMany(ctx context.Context, keys []string) (map[string]held, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opTimer)
	defer cancel()
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]held, len(keys))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		if h, ok := parseValue(s); ok {
			out[keys[i]] = h
		}
	}
	return out, nil
}

// An entry's value is "<generation>\n<fingerprint>\n<body>".
func entryValue(gen, fp string, body []byte) string { return gen + "\n" + fp + "\n" + string(body) }

func parseValue(s string) (held, bool) {
	gen, rest, ok := strings.Cut(s, "\n")
	if !ok {
		return held{}, false
	}
	fp, body, ok := strings.Cut(rest, "\n")
	return held{gen: gen, fp: fp, body: body}, ok
}

// store writes an entry read since snap, unless the stream changed
// generation, a state event of the run arrived since, the run's state in fp
// is older than its newest event's, or it is too large.
func (c *Cache) store(ctx context.Context, kind Kind, run, key string, snap Snapshot, fp string, body []byte) {
	if int64(len(body)) > c.cfg.MaxBytes/8 {
		c.m.stores.WithLabelValues(string(kind), "too_large").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.opTimer)
	defer cancel()
	value := entryValue(snap.gen, fp, body)
	res, err := storeScript.Run(ctx, c.rdb,
		[]string{c.cfg.Live, key, c.runKey(run), c.invKey(run), c.idxKey(), c.sizesKey(), c.totalKey(), c.atKey(run)},
		snap.gen, snap.start, value, c.cfg.TTL.Milliseconds(), c.cfg.MaxEntries, c.cfg.MaxBytes, stateAt(fp)).Slice()
	if err != nil {
		c.fail("store", err)
		return
	}
	status, _ := res[0].(string)
	c.m.stores.WithLabelValues(string(kind), status).Inc()
	for _, k := range res[1:] {
		if s, ok := k.(string); ok {
			c.m.evictions.WithLabelValues(string(c.kindOf(s))).Inc()
		}
	}
}

func (c *Cache) fail(op string, err error) {
	c.m.errors.WithLabelValues(op).Inc()
	if c.log != nil {
		c.log.WithError(err).WithField("op", op).Warn("run cache: redis failed; reading from Prefect")
	}
}

// Keys. An entry is <prefix>e:<kind>:<run>:<variant>; the run's set of
// entries <prefix>r:<run>; the time of its last state event <prefix>inv:<run>;
// the index (entry → store time), sizes (entry → bytes) and total bytes.
func (c *Cache) entryKey(k Kind, run, variant string) string {
	return c.cfg.Prefix + "e:" + string(k) + ":" + run + ":" + variant
}
func (c *Cache) runKey(run string) string { return c.cfg.Prefix + "r:" + run }
func (c *Cache) invKey(run string) string { return c.cfg.Prefix + "inv:" + run }
func (c *Cache) atKey(run string) string  { return c.cfg.Prefix + "at:" + run }
func (c *Cache) idxKey() string           { return c.cfg.Prefix + "idx" }
func (c *Cache) sizesKey() string         { return c.cfg.Prefix + "sizes" }
func (c *Cache) totalKey() string         { return c.cfg.Prefix + "bytes" }

// kindOf reads the kind back from an entry key.
func (c *Cache) kindOf(key string) Kind {
	rest := strings.TrimPrefix(key, c.cfg.Prefix+"e:")
	k, _, _ := strings.Cut(rest, ":")
	return Kind(k)
}

// Stats are the cache's size in Redis.
type Stats struct {
	Entries int64
	Bytes   int64
}

// Stats reads the cache's size.
func (c *Cache) Stats(ctx context.Context) (Stats, error) {
	n, err := c.rdb.ZCard(ctx, c.idxKey()).Result()
	if err != nil {
		return Stats{}, err
	}
	raw, err := c.rdb.Get(ctx, c.totalKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Stats{}, err
	}
	b, _ := strconv.ParseInt(raw, 10, 64)
	return Stats{Entries: n, Bytes: b}, nil
}
