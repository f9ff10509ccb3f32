package events

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func runID() string { return uuid.NewString() }

func TestLiveEventsReachTheRelayAndObserversThenGoLive(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	reg := prometheus.NewRegistry()
	cfg := r.config()
	cfg.Registry = reg
	sub, _ := r.start(t, cfg)
	waitFor(t, "a subscriber", func() bool { return r.prefect.subscribers() == 1 })
	waitFor(t, "events:live", func() bool { return r.live() != "" })
	if got, want := r.live(), strconv.FormatInt(r.generation(), 10); got != want {
		t.Fatalf("events:live = %q, want the current generation %q", got, want)
	}

	run := runID()
	now := time.Now()
	r.prefect.publish(stateEvent("e1", run, "Running", "RUNNING", now), true)
	// Not a state change: a runner's event under the same prefix.
	r.prefect.publish([]byte(`{"id":"x1","event":"prefect.flow-run.pull-step.executed","occurred":"`+
		now.UTC().Format(time.RFC3339Nano)+`","resource":{"prefect.resource.id":"prefect.flow-run.`+run+`"}}`), true)
	r.prefect.publish(stateEvent("e2", run, "Completed", "COMPLETED", now.Add(time.Millisecond)), true)
	// The cursor moves last, after the relay and the observers.
	waitFor(t, "two state events handled", func() bool {
		c, ok, _ := loadCursor(context.Background(), r.rdb)
		return ok && c.ID == "e2"
	})

	if got := r.ingress.ids(); !slices.Equal(got, []string{"e1", "e2"}) {
		t.Errorf("ingested %v, want [e1 e2] in order", got)
	}
	if got, want := r.obs.all(), []string{run + ":RUNNING", run + ":COMPLETED"}; !slices.Equal(got, want) {
		t.Errorf("observers saw %v, want %v", got, want)
	}
	c, ok, err := loadCursor(context.Background(), r.rdb)
	if err != nil || !ok || c.ID != "e2" || !c.Occurred.Equal(now.Add(time.Millisecond).UTC().Truncate(time.Microsecond)) {
		t.Errorf("cursor = %+v (ok=%v, err=%v), want e2 at %s", c, ok, err, now.Add(time.Millisecond))
	}
	if v := testutil.ToFloat64(sub.metrics.received.WithLabelValues(sourceLive)); v != 2 {
		t.Errorf("received{live} = %v, want 2", v)
	}
	for _, name := range []string{"relay_events_connected", "relay_events_leader"} {
		if v := gauge(t, reg, name); v != 1 {
			t.Errorf("%s = %v, want 1", name, v)
		}
	}
	st, err := sub.Status(context.Background())
	if err != nil || st.Role != "subscriber" || !st.Connected || !st.Live || st.CursorEventID != "e2" || st.problem() != nil {
		t.Errorf("status = %+v, %v; want a live, connected subscriber at e2", st, err)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestFirstStartRecordsTheCursorAndReplaysNoHistory(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	old := time.Now().Add(-10 * time.Second)
	r.prefect.persist(stateEvent("old", runID(), "Failed", "FAILED", old))
	r.start(t, r.config())
	waitFor(t, "events:live", func() bool { return r.live() != "" })
	if got := r.ingress.ids(); len(got) != 0 {
		t.Errorf("first start replayed %v; history must not reach Django", got)
	}
	// Nor does a reconnect's overlap reach before the first start.
	r.prefect.dropAll()
	waitFor(t, "the reconnect live", func() bool { return r.generation() >= 2 && r.live() != "" })
	if got := r.ingress.ids(); len(got) != 0 {
		t.Errorf("a reconnect after the first start replayed %v", got)
	}
	if _, ok, _ := loadCursor(context.Background(), r.rdb); !ok {
		t.Error("no cursor recorded on first start")
	}
}

func TestReconnectBackfillsFromTheCursorThroughEveryPage(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	run := runID()
	base := time.Now().Add(-30 * time.Second)
	// The cursor stands at e0; e1..e5 happened while nobody listened
	// (5 events: 3 pages of 2). e0 lies inside the overlap: re-read.
	if err := (Cursor{Occurred: base, ID: "e0"}).save(context.Background(), r.rdb); err != nil {
		t.Fatal(err)
	}
	r.prefect.persist(stateEvent("e0", run, "Pending", "PENDING", base))
	names := []string{"Running", "Failed", "AwaitingRetry", "Running", "Completed"}
	types := []string{"RUNNING", "FAILED", "SCHEDULED", "RUNNING", "COMPLETED"}
	for i := range names {
		r.prefect.persist(stateEvent("e"+string(rune('1'+i)), run, names[i], types[i], base.Add(time.Duration(i+1)*time.Second)))
	}
	r.start(t, r.config())
	waitFor(t, "events:live", func() bool { return r.live() != "" })
	want := []string{"e0", "e1", "e2", "e3", "e4", "e5"}
	if got := r.ingress.ids(); !slices.Equal(got, want) {
		t.Errorf("backfill ingested %v, want %v (oldest first, every page)", got, want)
	}
	c, _, _ := loadCursor(context.Background(), r.rdb)
	if c.ID != "e5" {
		t.Errorf("cursor at %q, want e5", c.ID)
	}
}

func TestEventsLostBetweenConnectionsAreBackfilled(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sub, _ := r.start(t, r.config())
	waitFor(t, "events:live", func() bool { return r.live() != "" })
	run := runID()
	r.prefect.publish(stateEvent("a", run, "Running", "RUNNING", time.Now()), true)
	waitFor(t, "a", func() bool { return len(r.ingress.ids()) == 1 })

	// Prefect restarts: the socket drops; b happens while nobody listens
	// and c is persisted late (after the reconnect's first backfill).
	r.prefect.dropAll()
	waitFor(t, "events:live deleted", func() bool { return r.live() == "" || r.live() == "2" })
	r.prefect.persist(stateEvent("b", run, "Failed", "FAILED", time.Now()))
	c := stateEvent("c", runID(), "Crashed", "CRASHED", time.Now())
	waitFor(t, "the reconnect", func() bool { return r.prefect.subscribers() == 1 })
	r.prefect.persist(c)
	waitFor(t, "a, b and c", func() bool { return len(r.ingress.ids()) == 3 })
	waitFor(t, "live again", func() bool { return r.live() == "2" })
	if got := r.ingress.ids(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("ingested %v, want [a b c] once each", got)
	}
	if v := testutil.ToFloat64(sub.metrics.reconnects); v < 1 {
		t.Errorf("reconnects = %v, want ≥ 1", v)
	}
}

func TestAFailingObserverBreaksTheConnection(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.start(t, r.config())
	waitFor(t, "events:live", func() bool { return r.live() == "1" })
	r.obs.mu.Lock()
	r.obs.failing = true
	r.obs.mu.Unlock()
	run := runID()
	r.prefect.publish(stateEvent("f1", run, "Running", "RUNNING", time.Now()), true)
	// events:live goes, a new generation comes, and the event the observer
	// missed is handled again from the backfill (the cursor did not move).
	waitFor(t, "a new generation live", func() bool { return r.generation() >= 2 && r.live() == "2" })
	waitFor(t, "the observer saw f1", func() bool { return slices.Contains(r.obs.all(), run+":RUNNING") })
}

func TestARelayThatCannotQueueBreaksTheConnection(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.start(t, r.config())
	waitFor(t, "events:live", func() bool { return r.live() == "1" })
	r.ingress.mu.Lock()
	r.ingress.fail = errors.New("redis down")
	r.ingress.mu.Unlock()
	run := runID()
	r.prefect.publish(stateEvent("q1", run, "Completed", "COMPLETED", time.Now()), true)
	waitFor(t, "events:live gone", func() bool { return r.live() != "1" })
	c, _, _ := loadCursor(context.Background(), r.rdb)
	if c.ID == "q1" {
		t.Fatal("cursor moved past an event the relay refused")
	}
	r.ingress.mu.Lock()
	r.ingress.fail = nil
	r.ingress.mu.Unlock()
	waitFor(t, "q1 delivered after the reconnect", func() bool { return slices.Contains(r.ingress.ids(), "q1") })
}

func TestOneSubscriberAcrossWorkersAndTakeover(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	a, stopA := r.start(t, r.config())
	waitFor(t, "a subscriber", func() bool { return r.prefect.subscribers() == 1 })
	b, _ := r.start(t, r.config())
	time.Sleep(100 * time.Millisecond) // several of b's attempts at the lease
	if n := r.prefect.subscribers(); n != 1 {
		t.Fatalf("%d subscribers, want 1", n)
	}
	first, other := a, b
	if st, _ := b.Status(context.Background()); st.Role == "subscriber" {
		first, other = b, a
	}
	if st, _ := other.Status(context.Background()); st.Role != "standby" || !strings.Contains(st.Holder, ":") {
		t.Errorf("other worker's status %+v, want standby naming the holder", st)
	}
	if first == a {
		stopA()
	} else {
		t.Skip("b won the race; the takeover is covered when a holds the lease")
	}
	waitFor(t, "the other worker to take over", func() bool {
		st, _ := other.Status(context.Background())
		return st.Role == "subscriber" && st.Connected
	})
	waitFor(t, "one subscriber", func() bool { return r.prefect.subscribers() == 1 })
}

func TestAHolderThatLosesItsLeaseStopsReading(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sub, _ := r.start(t, r.config())
	waitFor(t, "events:live", func() bool { return r.live() == "1" })
	// Its lease expired while it stalled, and another worker took it.
	r.rdb.Set(context.Background(), KeyLease, "someone-else", time.Minute)
	waitFor(t, "the stream closed", func() bool { return r.prefect.subscribers() == 0 })
	waitFor(t, "events:live deleted", func() bool { return r.live() == "" })
	waitFor(t, "standby behind someone-else", func() bool {
		st, _ := sub.Status(context.Background())
		return st.Role == "standby" && st.Holder == "someone-else"
	})
}

func TestADeadHoldersLeaseExpires(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.rdb.Set(context.Background(), KeyLease, "dead-worker", 400*time.Millisecond)
	r.rdb.Set(context.Background(), KeyLive, "7", 15*time.Second) // the dead worker's generation
	cfg := r.config()
	cfg.Settle = time.Hour // never live in this test: only the takeover matters
	r.start(t, cfg)
	time.Sleep(50 * time.Millisecond)
	if n := r.prefect.subscribers(); n != 0 {
		t.Fatalf("%d subscribers while the dead worker's lease holds", n)
	}
	r.mr.FastForward(time.Second)
	waitFor(t, "the takeover", func() bool { return r.prefect.subscribers() == 1 })
	// The dead worker's events:live goes at once: the new connection has
	// not backfilled yet.
	waitFor(t, "the dead generation's events:live deleted", func() bool { return r.live() == "" })
}

func TestAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, serverToken, clientToken string
		ok                             bool
	}{
		{"no auth on either side", "", "", true},
		{"matching token", "user:pass", "user:pass", true},
		{"wrong token is reported", "user:pass", "nope", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.prefect.token = tc.serverToken
			cfg := r.config()
			cfg.Token = tc.clientToken
			sub, _ := r.start(t, cfg)
			if tc.ok {
				waitFor(t, "live", func() bool { return r.live() != "" })
				return
			}
			waitFor(t, "the refusal in the status", func() bool {
				st, _ := sub.Status(context.Background())
				return strings.Contains(st.LastError, "Invalid token") && st.problem() != nil
			})
			if r.live() != "" {
				t.Error("events:live set without a connection")
			}
		})
	}
}

func TestStreamURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://127.0.0.1:4200/api":      "ws://127.0.0.1:4200/api/events/out",
		"https://prefect.example/api/":   "wss://prefect.example/api/events/out",
		"http://prefect:4200/prefix/api": "ws://prefect:4200/prefix/api/events/out",
	} {
		if got := StreamURL(in); got != want {
			t.Errorf("StreamURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShutdownReleasesLeaseAndLive(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	_, stop := r.start(t, r.config())
	waitFor(t, "events:live", func() bool { return r.live() != "" })
	stop()
	if r.live() != "" {
		t.Error("events:live left behind after shutdown")
	}
	if n, _ := r.rdb.Exists(context.Background(), KeyLease).Result(); n != 0 {
		t.Error("lease left behind after shutdown")
	}
}
