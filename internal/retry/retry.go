// Package retry is the one retry shape of the service: the delay policies
// (exponential backoff, a fixed schedule), ±20 % jitter, the Retry-After
// reader, and the loop that retries a call in-process. The Prefect client,
// write jobs, relay deliveries and relay setup all use it (see "Jobs" and
// "Relay" in docs/ARCHITECTURE.md).
package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy gives the delay before retry n (0 for the first retry).
type Policy interface {
	Delay(n int) time.Duration
}

// Jitter spreads d over ±20 % so retries of many callers do not align.
func Jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Exponential is Base·2^n capped at Max, with jitter.
type Exponential struct {
	Base, Max time.Duration
}

// Delay implements Policy.
func (e Exponential) Delay(n int) time.Duration {
	d := e.Max
	if n >= 0 && n < 63 && e.Base <= e.Max>>n { // no overflow
		d = e.Base << n
	}
	return Jitter(d)
}

// Schedule is a list of delays whose last entry repeats, with jitter.
type Schedule []time.Duration

// Delay implements Policy; an empty schedule waits 5 s.
func (s Schedule) Delay(n int) time.Duration {
	if len(s) == 0 {
		return Jitter(5 * time.Second)
	}
	return Jitter(s[min(max(n, 0), len(s)-1)])
}

// After reads a Retry-After header: delay-seconds or an HTTP date. It is 0
// when the header is absent, malformed or already past.
func After(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Hinter is an error that says how long to wait before the next try (a
// server's Retry-After).
type Hinter interface {
	RetryAfter() time.Duration
}

// permanent marks an error that must not be retried.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so Do returns it at once; Do hands back err itself.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Do calls op up to attempts times while it fails. Between tries it waits
// p.Delay(n), or the error's RetryAfter when that is longer. It gives up,
// returning op's last error, when op returns a Permanent error, when ctx is
// done, or when the wait would end after ctx's deadline (the retry could
// never finish in time).
func Do(ctx context.Context, attempts int, p Policy, op func(ctx context.Context) error) error {
	var err error
	for n := 0; ; n++ {
		err = op(ctx)
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if err == nil || n >= attempts-1 {
			return err
		}
		delay := p.Delay(n)
		var h Hinter
		if errors.As(err, &h) && h.RetryAfter() > delay {
			delay = h.RetryAfter()
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= delay {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
