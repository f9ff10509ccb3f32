package adaptive

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// clock is a fake clock the tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// round is `times` repetitions of: take `calls` slots (at most the limit of
// the moment), let `took` pass, release them all with outcome.
type round struct {
	calls   int
	took    time.Duration
	outcome Outcome
	times   int
}

func TestLimitFollowsAIMD(t *testing.T) {
	t.Parallel()
	fast := 10 * time.Millisecond
	cases := []struct {
		name     string
		cfg      Config
		rounds   []round
		want     int
		wantCuts int
	}{
		{name: "starts at max", cfg: Config{Max: 10}, want: 10},
		{name: "initial is clamped to max", cfg: Config{Max: 3, Initial: 8}, want: 3},
		{name: "overloads of one round cut once", cfg: Config{Max: 10},
			rounds: []round{{calls: 5, took: fast, outcome: Overload}}, want: 7, wantCuts: 1},
		{name: "an overload of a call sent after the cut cuts again", cfg: Config{Max: 10},
			rounds: []round{{calls: 5, took: fast, outcome: Overload}, {calls: 1, took: fast, outcome: Overload}},
			want:   5, wantCuts: 2},
		{name: "the limit never falls below min", cfg: Config{Max: 10, Min: 2},
			rounds: []round{{calls: 1, took: fast, outcome: Overload, times: 10}}, want: 2, wantCuts: 10},
		{name: "fast successes at full use grow the limit to max and no further", cfg: Config{Max: 6, Initial: 1},
			rounds: []round{{calls: 6, took: fast, outcome: Success, times: 40}}, want: 6},
		{name: "fast successes after a cut win the capacity back", cfg: Config{Max: 8, Initial: 8},
			rounds: []round{{calls: 8, took: fast, outcome: Overload}, {calls: 8, took: fast, outcome: Success, times: 40}},
			want:   8, wantCuts: 1},
		{name: "an idle limit does not grow", cfg: Config{Max: 10, Initial: 4},
			rounds: []round{{calls: 1, took: fast, outcome: Success, times: 50}}, want: 4},
		{name: "slow successes (upstream queueing) hold the limit", cfg: Config{Max: 10, Initial: 4},
			rounds: []round{{calls: 1, took: fast, outcome: Success}, {calls: 4, took: 100 * time.Millisecond, outcome: Success, times: 20}},
			want:   4},
		{name: "the baseline forgets a fast past after two windows", cfg: Config{Max: 10, Initial: 4, Window: 5},
			rounds: []round{{calls: 1, took: fast, outcome: Success}, {calls: 10, took: 100 * time.Millisecond, outcome: Success, times: 60}},
			want:   10},
		{name: "a success slower than SlowAfter is an overload", cfg: Config{Max: 10, Initial: 4, SlowAfter: 5 * time.Second},
			rounds: []round{{calls: 1, took: 6 * time.Second, outcome: Success}}, want: 3, wantCuts: 1},
		{name: "without SlowAfter a slow success is no overload", cfg: Config{Max: 10, Initial: 4},
			rounds: []round{{calls: 1, took: 60 * time.Second, outcome: Success}}, want: 4},
		{name: "ignored outcomes change nothing", cfg: Config{Max: 10, Initial: 5},
			rounds: []round{{calls: 5, took: 10 * time.Second, outcome: Ignore, times: 3}}, want: 5},
		{name: "growth waits Patience rounds per step", cfg: Config{Max: 10, Initial: 2, Patience: 4},
			rounds: []round{{calls: 2, took: fast, outcome: Success, times: 3}}, want: 2},
		{name: "with Patience 1 the same rounds grow it", cfg: Config{Max: 10, Initial: 2, Patience: 1},
			rounds: []round{{calls: 2, took: fast, outcome: Success, times: 3}}, want: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{now: time.Unix(1_700_000_000, 0)}
			reg := prometheus.NewRegistry()
			cfg := tc.cfg
			cfg.Now, cfg.Registry, cfg.Name = clk.Now, reg, "test"
			l := New(cfg)
			for _, r := range tc.rounds {
				for range max(r.times, 1) {
					var releases []func(Outcome)
					for range min(r.calls, l.Limit()) {
						rel, err := l.Acquire(t.Context())
						if err != nil {
							t.Fatal(err)
						}
						releases = append(releases, rel)
					}
					clk.advance(r.took)
					for _, rel := range releases {
						rel(r.outcome)
					}
					clk.advance(time.Millisecond)
				}
			}
			if got := l.Limit(); got != tc.want {
				t.Errorf("limit = %d, want %d", got, tc.want)
			}
			if got := testutil.ToFloat64(l.cuts); int(got) != tc.wantCuts {
				t.Errorf("cuts = %v, want %d", got, tc.wantCuts)
			}
			if l.InFlight() != 0 || l.Waiting() != 0 {
				t.Errorf("in flight %d, waiting %d after every release", l.InFlight(), l.Waiting())
			}
		})
	}
}

// waitFor polls cond; it is a wait for goroutines to reach a state, not a
// timed assertion.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWaitersAreServedFirstComeFirstServed(t *testing.T) {
	t.Parallel()
	l := New(Config{Max: 1, Initial: 1})
	hold, err := l.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan int, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			rel, err := l.Acquire(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			rel(Ignore)
		})
		waitFor(t, func() bool { return l.Waiting() == i+1 }) // queued in this order
	}
	hold(Ignore)
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Errorf("waiter %d served in place %d", got, want)
		}
		want++
	}
}

func TestAcquireGivesUpWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	l := New(Config{Max: 1, Initial: 1})
	hold, _ := l.Acquire(t.Context())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx)
		done <- err
	}()
	waitFor(t, func() bool { return l.Waiting() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
	if l.Waiting() != 0 {
		t.Errorf("a cancelled waiter is still queued")
	}
	hold(Success)
	// The slot the cancelled waiter did not take is free.
	rel, err := l.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rel(Success)
}

func TestReleaseTwiceCountsOnce(t *testing.T) {
	t.Parallel()
	l := New(Config{Max: 4, Initial: 2})
	rel, _ := l.Acquire(t.Context())
	other, _ := l.Acquire(t.Context())
	rel(Overload)
	rel(Overload)
	if l.InFlight() != 1 || l.Limit() != 1 {
		t.Errorf("in flight %d limit %d, want 1 and 1", l.InFlight(), l.Limit())
	}
	other(Ignore)
}

// Under -race: many callers never hold more slots than the limit.
func TestConcurrentCallersStayWithinTheLimit(t *testing.T) {
	t.Parallel()
	l := New(Config{Max: 5})
	var mu sync.Mutex
	cur, peak := 0, 0
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for j := range 20 {
				rel, err := l.Acquire(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				time.Sleep(50 * time.Microsecond)
				mu.Lock()
				cur--
				mu.Unlock()
				if (i+j)%17 == 0 {
					rel(Overload)
				} else {
					rel(Success)
				}
			}
		})
	}
	wg.Wait()
	if peak > 5 {
		t.Errorf("%d calls in flight at once, max 5", peak)
	}
	if l.InFlight() != 0 || l.Waiting() != 0 {
		t.Errorf("in flight %d, waiting %d at the end", l.InFlight(), l.Waiting())
	}
}

func TestMetricsShowLimitInFlightAndWaiters(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	l := New(Config{Max: 4, Initial: 1, Registry: reg, Name: "prefect_writes"})
	hold, _ := l.Acquire(t.Context())
	go func() {
		if rel, err := l.Acquire(t.Context()); err == nil {
			rel(Ignore)
		}
	}()
	waitFor(t, func() bool { return l.Waiting() == 1 })
	want := `
# HELP proxy_adaptive_in_flight Calls holding a slot of the adaptive limit.
# TYPE proxy_adaptive_in_flight gauge
proxy_adaptive_in_flight{limiter="prefect_writes"} 1
# HELP proxy_adaptive_limit Current adaptive limit of calls in flight (between 1 and its maximum, WORKER_CONCURRENCY for Prefect writes).
# TYPE proxy_adaptive_limit gauge
proxy_adaptive_limit{limiter="prefect_writes"} 1
# HELP proxy_adaptive_limit_max Upper bound of the adaptive limit.
# TYPE proxy_adaptive_limit_max gauge
proxy_adaptive_limit_max{limiter="prefect_writes"} 4
# HELP proxy_adaptive_waiters Callers waiting for a slot of the adaptive limit.
# TYPE proxy_adaptive_waiters gauge
proxy_adaptive_waiters{limiter="prefect_writes"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"proxy_adaptive_in_flight", "proxy_adaptive_limit", "proxy_adaptive_limit_max", "proxy_adaptive_waiters"); err != nil {
		t.Error(err)
	}
	hold(Success)
	waitFor(t, func() bool { return l.InFlight() == 0 })
}
