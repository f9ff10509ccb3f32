// Package adaptive limits how many calls are in flight to an upstream whose
// capacity is unknown and changes: Prefect on SQLite answers 503 as soon as
// two writers contend for its lock, while Prefect on PostgreSQL takes many at
// once. The limit follows AIMD (additive increase, multiplicative decrease),
// as Netflix's concurrency-limits does: an overload signal (503, 429, a
// timeout; optionally an answer slower than SlowAfter) cuts the limit by Backoff, and a
// run of fast successes while the limit is in use raises it by one. The
// limit starts at Max and stays within [Min, Max]; callers over it wait in
// FIFO order.
package adaptive

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config's zero fields.
const (
	DefaultBackoff   = 0.75
	DefaultTolerance = 2.0
	DefaultSlack     = 25 * time.Millisecond
	DefaultWindow    = 100
	DefaultPatience  = 4
)

// Config configures a Limiter. Zero fields take the defaults above.
type Config struct {
	// Min and Max bound the limit (Min default 1; Max is required, the
	// worker's WORKER_CONCURRENCY).
	Min, Max int
	// Initial is the limit at start (default Max: a Prefect that takes
	// WORKER_CONCURRENCY calls sees no change; one that cannot cuts it
	// within a few rounds).
	Initial int
	// Patience: a good success at full use adds 1/(limit×Patience), so
	// the limit grows by one per Patience rounds of calls. Each probe above
	// what the upstream takes costs a 503: on SQLite, growing by one per
	// round (Patience 1) created a fifth fewer runs per second than a
	// fixed single writer (docs/BENCHMARKS.md, "Writes").
	Patience int
	// Backoff is the factor an overload multiplies the limit by, at most
	// once per round of calls: calls started before the last cut report
	// the overload that cut already answered.
	Backoff float64
	// A success raises the limit only with good latency: at most Tolerance
	// times the baseline (the fastest call of the last two windows of
	// Window calls) plus Slack. Slower, the upstream is queueing: the limit
	// holds.
	Tolerance float64
	Slack     time.Duration
	Window    int
	// SlowAfter, if set, makes a success that took longer count as an
	// overload. Off by default: on a loaded PostgreSQL-backed Prefect
	// (BenchmarkWrites) answers past 5 s were queueing on a busy CPU, and
	// cutting on them cost throughput; a timeout still is an overload.
	SlowAfter time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Registry, if set, gets the limit's gauges and counters, with Name
	// as the "limiter" label.
	Registry prometheus.Registerer
	Name     string
}

// Outcome is how a call ended, as far as the limit is concerned.
type Outcome int

const (
	// Success: the upstream answered (a 404 or a 422 is an answer too).
	Success Outcome = iota
	// Overload: the upstream could not take the call (503, 429, a timeout,
	// a refused connection).
	Overload
	// Ignore: the call says nothing about the upstream (cancelled by its
	// caller); only its slot is given back.
	Ignore
)

// Limiter is an adaptive concurrency limit. Safe for concurrent use.
type Limiter struct {
	cfg Config

	mu       sync.Mutex
	limit    float64
	inFlight int
	waiters  []chan struct{} // FIFO; a closed channel owns a slot
	lastCut  time.Time
	// baseline: the fastest call of the current and the previous window.
	curMin, prevMin time.Duration
	samples         int

	overloads, cuts prometheus.Counter
}

// New builds a Limiter; it panics if Max < 1, a programming error.
func New(cfg Config) *Limiter {
	if cfg.Max < 1 {
		panic("adaptive: Max must be at least 1")
	}
	cfg.Min = min(max(cfg.Min, 1), cfg.Max)
	if cfg.Initial <= 0 {
		cfg.Initial = cfg.Max
	}
	if cfg.Patience <= 0 {
		cfg.Patience = DefaultPatience
	}
	cfg.Initial = min(max(cfg.Initial, cfg.Min), cfg.Max)
	if cfg.Backoff <= 0 || cfg.Backoff >= 1 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Tolerance < 1 {
		cfg.Tolerance = DefaultTolerance
	}
	if cfg.Slack <= 0 {
		cfg.Slack = DefaultSlack
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{cfg: cfg, limit: float64(cfg.Initial)}
	l.register()
	return l
}

// Limit is the current limit.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slots()
}

// InFlight is the number of calls holding a slot.
func (l *Limiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight
}

// Waiting is the number of callers waiting for a slot.
func (l *Limiter) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}

// Acquire waits for a slot (FIFO) or for ctx to end. On success the caller
// must call release exactly once, with the call's outcome.
func (l *Limiter) Acquire(ctx context.Context) (release func(Outcome), err error) {
	l.mu.Lock()
	if len(l.waiters) == 0 && l.inFlight < l.slots() {
		l.inFlight++
		l.mu.Unlock()
		return l.releaser(), nil
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return l.releaser(), nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-ch: // granted as ctx ended: hand the slot on
			l.inFlight--
			l.grant()
		default:
			l.remove(ch)
		}
		return nil, ctx.Err()
	}
}

// releaser is the release function of a call started now.
func (l *Limiter) releaser() func(Outcome) {
	start := l.cfg.Now()
	var once sync.Once
	return func(o Outcome) {
		once.Do(func() { l.release(start, o) })
	}
}

func (l *Limiter) release(start time.Time, o Outcome) {
	now := l.cfg.Now()
	rtt := now.Sub(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	inFlight := l.inFlight
	l.inFlight--
	if o == Success && l.cfg.SlowAfter > 0 && rtt > l.cfg.SlowAfter {
		o = Overload
	}
	switch o {
	case Overload:
		if l.overloads != nil {
			l.overloads.Inc()
		}
		// One cut per round: a call started before the last cut was sent
		// under the old limit, and its overload is the one already answered.
		if start.After(l.lastCut) || l.lastCut.IsZero() {
			l.limit = max(float64(l.cfg.Min), math.Floor(l.limit*l.cfg.Backoff))
			l.lastCut = now
			if l.cuts != nil {
				l.cuts.Inc()
			}
		}
	case Success:
		good := l.sample(rtt)
		// Grow only while the limit is what holds calls back (in use at
		// least half): an idle limit proves nothing about capacity.
		if good && 2*inFlight >= l.slots() {
			l.limit = min(float64(l.cfg.Max), l.limit+1/(math.Max(l.limit, 1)*float64(l.cfg.Patience)))
		}
	}
	l.grant()
}

// sample records a success's latency in the baseline and reports whether it
// was good (within Tolerance×baseline+Slack).
func (l *Limiter) sample(rtt time.Duration) bool {
	if l.curMin == 0 || rtt < l.curMin {
		l.curMin = rtt
	}
	l.samples++
	base := l.curMin
	if l.prevMin > 0 && l.prevMin < base {
		base = l.prevMin
	}
	if l.samples >= l.cfg.Window {
		l.prevMin, l.curMin, l.samples = l.curMin, 0, 0
	}
	return rtt <= time.Duration(l.cfg.Tolerance*float64(base))+l.cfg.Slack
}

// slots is the whole number of calls the limit allows now.
func (l *Limiter) slots() int { return max(l.cfg.Min, int(l.limit)) }

// grant hands free slots to waiters, first come first served.
func (l *Limiter) grant() {
	for len(l.waiters) > 0 && l.inFlight < l.slots() {
		ch := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.inFlight++
		close(ch)
	}
}

func (l *Limiter) remove(ch chan struct{}) {
	for i, w := range l.waiters {
		if w == ch {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			return
		}
	}
}

func (l *Limiter) register() {
	reg := l.cfg.Registry
	if reg == nil {
		return
	}
	labels := prometheus.Labels{"limiter": l.cfg.Name}
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) })
	}
	l.overloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "proxy_adaptive_overloads_total", ConstLabels: labels,
		Help: "Calls that ended in an overload signal (429, 502, 503, 504, a timeout or a broken connection)."})
	l.cuts = prometheus.NewCounter(prometheus.CounterOpts{Name: "proxy_adaptive_limit_decreases_total", ConstLabels: labels,
		Help: "Times an overload cut the adaptive limit (at most once per round of calls)."})
	reg.MustRegister(
		gauge("proxy_adaptive_limit", "Current adaptive limit of calls in flight (between 1 and its maximum, WORKER_CONCURRENCY for Prefect writes).", l.Limit),
		gauge("proxy_adaptive_limit_max", "Upper bound of the adaptive limit.", func() int { return l.cfg.Max }),
		gauge("proxy_adaptive_in_flight", "Calls holding a slot of the adaptive limit.", l.InFlight),
		gauge("proxy_adaptive_waiters", "Callers waiting for a slot of the adaptive limit.", l.Waiting),
		l.overloads, l.cuts)
}
