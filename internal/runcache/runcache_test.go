package runcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// backends are the Redis servers the cache runs on: a real redis-server
// (production) and miniredis (the api's embedded mode).
func backends(t *testing.T) map[string]redis.UniversalClient {
	t.Helper()
	out := map[string]redis.UniversalClient{}
	mr := miniredis.RunT(t)
	out["miniredis"] = redis.NewClient(&redis.Options{Addr: mr.Addr()})
	if !testing.Short() {
		out["redis-server"] = redis.NewClient(&redis.Options{Addr: testenv.RedisFull(t).Addr})
	}
	for _, c := range out {
		t.Cleanup(func() { _ = c.Close() })
	}
	return out
}

// onBackends runs fn on each backend with a fresh cache whose stream is
// live in generation gen and whose run runA finished an hour ago.
func onBackends(t *testing.T, gen string, fn func(t *testing.T, r *rig)) {
	t.Helper()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rdb, Config{})
			r.live(t, gen)
			r.runs.set(runA, "COMPLETED", time.Now().Add(-time.Hour))
			fn(t, r)
		})
	}
}

// runs is a fake Prefect's flow runs for the Poller, counting reads.
type runs struct {
	mu      sync.Mutex
	json    map[string]string
	stateAt map[string]time.Time // each run's state timestamp, its event's time
	version int
	polls   atomic.Int64
}

func (r *runs) set(id, typ string, ended time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json == nil {
		r.json, r.stateAt = map[string]string{}, map[string]time.Time{}
	}
	at := time.Now().UTC()
	r.stateAt[id] = at
	end := "null"
	if !ended.IsZero() {
		end = `"` + ended.UTC().Format(time.RFC3339Nano) + `"`
	}
	r.version++ // a new state: a new state id and updated time
	r.json[id] = fmt.Sprintf(`{"id":%q,"name":"a<b>&c","updated":"2026-01-01T00:00:%02dZ","state_type":%q,"end_time":%s,"state":{"id":"s%d","type":%q,"name":"x","timestamp":%q}}`,
		id, r.version%60, typ, end, r.version, typ, at.Format(time.RFC3339Nano))
}

// at is run id's state timestamp: the time of the event of its last set.
func (r *runs) at(id string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stateAt[id]
}

func (r *runs) FlowRunPoll(_ context.Context, id string) (json.RawMessage, error) {
	r.polls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.json[id]
	if !ok {
		return nil, errors.New("no such run")
	}
	return json.RawMessage(s), nil
}

type rig struct {
	c    *Cache
	rdb  redis.UniversalClient
	runs *runs
	reg  *prometheus.Registry
}

func newRig(t *testing.T, rdb redis.UniversalClient, cfg Config) *rig {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "t" + fmt.Sprint(time.Now().UnixNano()) + ":"
	}
	cfg.Live = cfg.Prefix + "live" // each test its own stream
	r := &rig{rdb: rdb, runs: &runs{}, reg: prometheus.NewRegistry()}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	r.c = New(rdb, r.runs, cfg, r.reg, log)
	return r
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (r *rig) live(t *testing.T, gen string) {
	t.Helper()
	ctx := context.Background()
	var err error
	if gen == "" {
		err = r.rdb.Del(ctx, r.c.cfg.Live).Err()
	} else {
		err = r.rdb.Set(ctx, r.c.cfg.Live, gen, 15*time.Second).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// reader counts the reads a route makes of Prefect and answers body.
type reader struct {
	n    atomic.Int64
	body func() []byte
}

func (rd *reader) read(context.Context) ([]byte, error) {
	rd.n.Add(1)
	return rd.body(), nil
}

func constBody(s string) func() []byte { return func() []byte { return []byte(s) } }

const runA = "6f2f5c1c-2a57-4a5b-9c36-1f7c8e8e0a01"

// The rules of what is stored and served, on every backend.
func TestAnswerStoresOnlyFinishedRunsWhileTheStreamIsLive(t *testing.T) {
	t.Parallel()
	long := time.Now().Add(-time.Hour)
	cases := []struct {
		name      string
		gen       string // events:live; "" = stream off
		state     string
		ended     time.Time
		kind      Kind
		wantReads int64 // of three identical reads
	}{
		{"stream off: never served from the cache", "", "COMPLETED", long, Poll, 3},
		{"completed run's poll is read once", "7", "COMPLETED", long, Poll, 1},
		{"failed run's poll is read once", "7", "FAILED", long, Poll, 1},
		{"crashed run's graph is read once", "7", "CRASHED", long, Graph, 1},
		{"cancelled run's logs are read once", "7", "CANCELLED", long, Logs, 1},
		{"running run is never cached", "7", "RUNNING", time.Time{}, Poll, 3},
		{"paused run is never cached", "7", "PAUSED", time.Time{}, Graph, 3},
		{"cancelling run is never cached", "7", "CANCELLING", time.Time{}, LogsByNode, 3},
		{"scheduled run (awaiting retry) is never cached", "7", "SCHEDULED", time.Time{}, Poll, 3},
		{"poll of a run that just ended is cached at once", "7", "COMPLETED", time.Now(), Poll, 1},
		{"graph of a run that just ended waits for the settle time", "7", "COMPLETED", time.Now(), Graph, 3},
		{"logs of a run that just ended wait for the log grace", "7", "COMPLETED", time.Now().Add(-2 * time.Minute), LogsByNode, 3},
		{"graph of a run ended 2 minutes ago is cached", "7", "COMPLETED", time.Now().Add(-2 * time.Minute), Graph, 1},
	}
	for name, rdb := range backends(t) {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t, rdb, Config{})
				r.live(t, tc.gen)
				r.runs.set(runA, tc.state, tc.ended)
				rd := &reader{body: constBody(`{"answer":"<&>"}`)}
				if tc.kind == Poll {
					rd.body = func() []byte { b, _ := r.runs.FlowRunPoll(context.Background(), runA); return b }
				}
				var first []byte
				for i := range 3 {
					b, err := r.c.Answer(context.Background(), tc.kind, runA, "", rd.read)
					if err != nil {
						t.Fatal(err)
					}
					if i == 0 {
						first = b
					} else if string(b) != string(first) {
						t.Fatalf("read %d answered %q, the first %q", i, b, first)
					}
				}
				if got := rd.n.Load(); got != tc.wantReads {
					t.Errorf("reads of Prefect = %d, want %d", got, tc.wantReads)
				}
			})
		}
	}
}

// Cases that change the stream or the run between reads.
func TestAnswerIsRetiredByReconnectAndStateEvents(t *testing.T) {
	t.Parallel()
	onBackends(t, "41", func(t *testing.T, r *rig) {
		ctx := context.Background()
		graph := &reader{body: constBody(`[{"id":"n1"}]`)}
		read := func() {
			t.Helper()
			if _, err := r.c.Answer(ctx, Graph, runA, "", graph.read); err != nil {
				t.Fatal(err)
			}
		}
		read()
		read()
		if graph.n.Load() != 1 || r.runs.polls.Load() != 1 {
			t.Fatalf("graph reads %d, polls %d; want 1 and 1", graph.n.Load(), r.runs.polls.Load())
		}

		// The stream reconnects: an entry of the old generation is
		// served again only once the run's state, read from Prefect,
		// shows it unchanged.
		r.live(t, "42")
		read()
		read()
		if graph.n.Load() != 1 || r.runs.polls.Load() != 2 {
			t.Fatalf("after a reconnect graph reads %d, polls %d; want 1 and 2 (one revalidation)", graph.n.Load(), r.runs.polls.Load())
		}
		if got := testutil.ToFloat64(r.c.m.revalidations.WithLabelValues("graph")); got != 1 {
			t.Errorf("graph revalidations = %v, want 1", got)
		}
		// The run changed while the stream was away (retried and
		// finished again): the old entry is not served.
		r.runs.set(runA, "COMPLETED", time.Now().Add(-time.Hour))
		r.live(t, "43")
		read()
		read()
		if graph.n.Load() != 2 {
			t.Fatalf("after a reconnect, the run changed: graph reads = %d, want 2", graph.n.Load())
		}

		// The stream disconnects: nothing is served, nothing stored.
		r.live(t, "")
		read()
		read()
		if graph.n.Load() != 4 {
			t.Fatalf("with the stream off graph reads = %d, want 4", graph.n.Load())
		}

		// A retry: the run's event drops its entries; it is running now.
		r.live(t, "44")
		read() // revalidated: the run is unchanged
		r.runs.set(runA, "RUNNING", time.Time{})
		if err := r.c.OnStateEvent(ctx, runA, "RUNNING", r.runs.at(runA)); err != nil {
			t.Fatal(err)
		}
		read()
		read()
		if graph.n.Load() != 6 {
			t.Fatalf("after the retry event graph reads = %d, want 6", graph.n.Load())
		}
		if got := testutil.ToFloat64(r.c.m.invalidations.WithLabelValues("graph")); got != 1 {
			t.Errorf("graph invalidations = %v, want 1", got)
		}
		if got := testutil.ToFloat64(r.c.m.invalidations.WithLabelValues("poll")); got != 1 {
			t.Errorf("poll invalidations = %v, want 1", got)
		}
		st, err := r.c.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Entries != 0 || st.Bytes != 0 {
			t.Errorf("after the invalidation the cache holds %+v, want nothing", st)
		}
	})
}

// A state event that arrives while a read is in flight keeps that read's
// answer out of the cache, even though it was stored after the event.
func TestStateEventDuringAReadKeepsItsAnswerOut(t *testing.T) {
	t.Parallel()
	onBackends(t, "9", func(t *testing.T, r *rig) {
		ctx := context.Background()
		n := 0
		read := func(ctx context.Context) ([]byte, error) {
			n++
			if n == 1 {
				// Prefect answered the finished run; then it is forced
				// to another final state.
				r.runs.set(runA, "FAILED", time.Now().Add(-time.Hour))
				if err := r.c.OnStateEvent(ctx, runA, "FAILED", r.runs.at(runA)); err != nil {
					return nil, err
				}
			}
			return []byte(`[]`), nil
		}
		for range 2 {
			if _, err := r.c.Answer(ctx, Graph, runA, "", read); err != nil {
				t.Fatal(err)
			}
		}
		if n != 2 {
			t.Errorf("reads = %d: the answer read across the event was served from the cache", n)
		}
		if got := testutil.ToFloat64(r.c.m.stores.WithLabelValues("graph", "raced")); got != 1 {
			t.Errorf("raced stores = %v, want 1", got)
		}
	})
}

// The index bounds the cache: past MaxEntries or MaxBytes the oldest
// entries go, and are counted by kind.
func TestEvictionKeepsTheBoundsOldestFirst(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		cfg         Config
		bodySize    int
		stores      int
		wantEntries int64 // at most; 0: no graph is stored
	}{
		{"entry bound", Config{MaxEntries: 3}, 10, 5, 3},
		{"byte bound", Config{MaxBytes: 8 * 1000}, 900, 20, 1000},
		{"an answer over an eighth of the bytes is not stored", Config{MaxBytes: 8 * 100}, 200, 3, 0},
	}
	for name, rdb := range backends(t) {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t, rdb, tc.cfg)
				ctx := context.Background()
				r.live(t, "7")
				body := make([]byte, tc.bodySize)
				for i := range body {
					body[i] = 'x'
				}
				var ids []string
				for i := range tc.stores {
					id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
					ids = append(ids, id)
					r.runs.set(id, "COMPLETED", time.Now().Add(-time.Hour))
					if _, err := r.c.Answer(ctx, Graph, id, "", func(context.Context) ([]byte, error) { return body, nil }); err != nil {
						t.Fatal(err)
					}
					time.Sleep(2 * time.Millisecond) // distinct store times
				}
				st, err := r.c.Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// The polls read to learn each run's state are entries too.
				limit := tc.wantEntries
				if limit == 0 {
					limit = int64(tc.stores) // the polls only
				}
				if st.Entries > limit {
					t.Errorf("entries = %d, want at most %d", st.Entries, limit)
				}
				if st.Bytes > tc.cfg.WithDefaults().MaxBytes {
					t.Errorf("bytes = %d, over the bound %d", st.Bytes, tc.cfg.WithDefaults().MaxBytes)
				}
				if tc.wantEntries == 0 {
					return
				}
				// The newest graph is held, the oldest is gone.
				rd := &reader{body: func() []byte { return body }}
				if _, err := r.c.Answer(ctx, Graph, ids[len(ids)-1], "", rd.read); err != nil {
					t.Fatal(err)
				}
				if rd.n.Load() != 0 {
					t.Errorf("the newest entry was evicted")
				}
				if _, err := r.c.Answer(ctx, Graph, ids[0], "", rd.read); err != nil {
					t.Fatal(err)
				}
				if rd.n.Load() != 1 {
					t.Errorf("the oldest entry was kept")
				}
				evicted := 0.0
				for _, k := range Kinds() {
					evicted += testutil.ToFloat64(r.c.m.evictions.WithLabelValues(string(k)))
				}
				if evicted == 0 {
					t.Errorf("no eviction counted")
				}
			})
		}
	}
}

// Concurrent misses of one answer share one read of Prefect.
func TestConcurrentMissesShareOneRead(t *testing.T) {
	t.Parallel()
	onBackends(t, "7", func(t *testing.T, r *rig) {
		release := make(chan struct{})
		var reads atomic.Int64
		read := func(context.Context) ([]byte, error) {
			reads.Add(1)
			<-release
			return []byte(`[1]`), nil
		}
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				if b, err := r.c.Answer(context.Background(), Graph, runA, "", read); err != nil || string(b) != "[1]" {
					t.Errorf("answer %q, %v", b, err)
				}
			})
		}
		time.Sleep(50 * time.Millisecond) // let the callers pile up on the read
		close(release)
		wg.Wait()
		if n := reads.Load(); n < 1 || n > 2 {
			t.Errorf("64 concurrent misses made %d reads", n)
		}
		if n := r.runs.polls.Load(); n > 2 {
			t.Errorf("64 concurrent misses made %d state reads", n)
		}
	})
}

// History verdicts: held runs come from the cache, the others are computed
// (only they), and those past the settle time are stored.
func TestFlagsComputeOnlyTheRunsNotHeld(t *testing.T) {
	t.Parallel()
	onBackends(t, "7", func(t *testing.T, r *rig) {
		ctx := context.Background()
		old := time.Now().Add(-time.Hour)
		listed := []EndedRun{
			{ID: "00000000-0000-4000-8000-000000000001", Ended: old, Fingerprint: "s1 t1"},
			{ID: "00000000-0000-4000-8000-000000000002", Ended: old, Fingerprint: "s2 t2"},
			{ID: "00000000-0000-4000-8000-000000000003", Ended: time.Now(), Fingerprint: "s3 t3"}, // within the settle time
		}
		var asked [][]string
		compute := func(_ context.Context, ids []string) (map[string]bool, error) {
			asked = append(asked, ids)
			return map[string]bool{listed[1].ID: true}, nil
		}
		for range 2 {
			snap := r.c.Begin(ctx)
			got, err := r.c.Flags(ctx, snap, listed, compute)
			if err != nil {
				t.Fatal(err)
			}
			if got[listed[0].ID] || !got[listed[1].ID] || got[listed[2].ID] {
				t.Errorf("flags = %v", got)
			}
		}
		if len(asked) != 2 || len(asked[0]) != 3 || len(asked[1]) != 1 || asked[1][0] != listed[2].ID {
			t.Errorf("computed %v; want all three, then only the unsettled run", asked)
		}
		// A reconnect: the listing shows run 1 unchanged, run 2 changed.
		r.live(t, "8")
		listed[1].Fingerprint = "s2' t2'"
		asked = nil
		if _, err := r.c.Flags(ctx, r.c.Begin(ctx), listed, compute); err != nil {
			t.Fatal(err)
		}
		if len(asked) != 1 || len(asked[0]) != 2 || asked[0][0] != listed[1].ID {
			t.Errorf("after a reconnect computed %v; want the changed and the unsettled run", asked)
		}
		r.live(t, "")
		asked = nil
		if _, err := r.c.Flags(ctx, r.c.Begin(ctx), listed, compute); err != nil {
			t.Fatal(err)
		}
		if len(asked) != 1 || len(asked[0]) != 3 {
			t.Errorf("stream off: computed %v, want all three", asked)
		}
	})
}

// Redis down: every read goes to Prefect and answers; an event cannot be
// recorded and says so.
func TestRedisDownBypassesTheCache(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	r := newRig(t, rdb, Config{})
	r.runs.set(runA, "COMPLETED", time.Now().Add(-time.Hour))
	rd := &reader{body: constBody(`[]`)}
	for range 2 {
		if _, err := r.c.Answer(context.Background(), Graph, runA, "", rd.read); err != nil {
			t.Fatal(err)
		}
	}
	if rd.n.Load() != 2 {
		t.Errorf("reads = %d, want 2", rd.n.Load())
	}
	if err := r.c.OnStateEvent(context.Background(), runA, "RUNNING", time.Now()); err == nil {
		t.Error("OnStateEvent with Redis down returned nil")
	}
	if got := testutil.ToFloat64(r.c.m.errors.WithLabelValues("get")); got == 0 {
		t.Error("no Redis error counted")
	}
}

// A nil cache and ids that are not UUIDs read straight through.
func TestNilCacheAndBadIDsReadThrough(t *testing.T) {
	t.Parallel()
	var c *Cache
	rd := &reader{body: constBody(`1`)}
	if _, err := c.Answer(context.Background(), Poll, runA, "", rd.read); err != nil {
		t.Fatal(err)
	}
	if err := c.OnStateEvent(context.Background(), runA, "RUNNING", time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := c.Flags(context.Background(), c.Begin(context.Background()), []EndedRun{{ID: runA}},
		func(_ context.Context, ids []string) (map[string]bool, error) {
			return map[string]bool{ids[0]: true}, nil
		})
	if err != nil || !got[runA] {
		t.Fatalf("flags %v, %v", got, err)
	}
	mr := miniredis.RunT(t)
	r := newRig(t, redis.NewClient(&redis.Options{Addr: mr.Addr()}), Config{})
	r.live(t, "1")
	for range 2 {
		if _, err := r.c.Answer(context.Background(), Poll, "not-a-uuid", "", rd.read); err != nil {
			t.Fatal(err)
		}
	}
	if rd.n.Load() != 3 {
		t.Errorf("reads = %d, want 3", rd.n.Load())
	}
}

func TestTerminalStates(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]bool{"COMPLETED": true, "FAILED": true, "CRASHED": true, "CANCELLED": true,
		"RUNNING": false, "PENDING": false, "SCHEDULED": false, "PAUSED": false, "CANCELLING": false, "": false} {
		if IsTerminal(typ) != want {
			t.Errorf("IsTerminal(%q) = %v", typ, !want)
		}
	}
}

// Prefect publishes a state event before it commits the state: a read that
// begins after the event can still see the run's previous state. That
// answer is not stored; the state once committed is.
func TestStateEventBeforeItsCommitKeepsTheOldStateOut(t *testing.T) {
	t.Parallel()
	onBackends(t, "5", func(t *testing.T, r *rig) {
		ctx := context.Background()
		oldRun, _ := r.runs.FlowRunPoll(ctx, runA)
		old := append([]byte(nil), oldRun...)
		// A forced change to another final state: its event arrives first.
		r.runs.set(runA, "FAILED", time.Now().Add(-time.Hour))
		committed, _ := r.runs.FlowRunPoll(ctx, runA)
		if err := r.c.OnStateEvent(ctx, runA, "FAILED", r.runs.at(runA)); err != nil {
			t.Fatal(err)
		}
		reads := 0
		poll := func(body []byte) []byte {
			t.Helper()
			got, err := r.c.Answer(ctx, Poll, runA, "", func(context.Context) ([]byte, error) { reads++; return body, nil })
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		for i, step := range []struct {
			prefect []byte // what Prefect answers
			want    []byte
			reads   int
		}{
			{old, old, 1},             // before the commit: answered, not stored
			{old, old, 2},             // so the next read asks Prefect again
			{committed, committed, 3}, // committed: stored
			{old, committed, 3},       // and served
		} {
			if got := poll(step.prefect); string(got) != string(step.want) || reads != step.reads {
				t.Errorf("step %d: answered %s after %d reads, want %s after %d", i, got, reads, step.want, step.reads)
			}
		}
		if got := testutil.ToFloat64(r.c.m.stores.WithLabelValues("poll", "raced")); got != 2 {
			t.Errorf("raced stores = %v, want 2", got)
		}
	})
}
