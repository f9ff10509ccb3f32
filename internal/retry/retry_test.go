package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func within(d, want time.Duration) bool { return d >= want*8/10 && d <= want*12/10 }

func TestExponential(t *testing.T) {
	t.Parallel()
	p := Exponential{Base: 500 * time.Millisecond, Max: time.Minute}
	for n := 0; n < 70; n++ {
		want := time.Minute
		if n < 7 {
			want = 500 * time.Millisecond << n
		}
		for range 20 {
			if d := p.Delay(n); !within(d, want) {
				t.Fatalf("retry %d: %v outside ±20%% of %v", n, d, want)
			}
		}
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	s := Schedule{5 * time.Second, 30 * time.Second, time.Hour}
	for n, want := range []time.Duration{5 * time.Second, 30 * time.Second, time.Hour, time.Hour, time.Hour} {
		if d := s.Delay(n); !within(d, want) {
			t.Fatalf("retry %d: %v outside ±20%% of %v", n, d, want)
		}
	}
	if d := (Schedule{}).Delay(3); !within(d, 5*time.Second) {
		t.Fatalf("empty schedule: %v", d)
	}
}

func TestAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 7 ", 7 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"Fri, 02 Jan 2026 03:05:05 GMT", time.Minute},
		{"Friday, 02-Jan-26 03:04:35 GMT", 30 * time.Second},
		{"Fri, 02 Jan 2026 03:00:00 GMT", 0},
	}
	for _, tc := range cases {
		if got := After(tc.in, now); got != tc.want {
			t.Errorf("After(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

type hinted struct{ d time.Duration }

func (h hinted) Error() string             { return "busy" }
func (h hinted) RetryAfter() time.Duration { return h.d }

var errDown = errors.New("down")

func TestDo(t *testing.T) {
	t.Parallel()
	fast := Exponential{Base: time.Millisecond, Max: time.Millisecond}
	cases := []struct {
		name     string
		attempts int
		fails    int   // calls that fail before one succeeds
		fail     error // what they return
		wantN    int
		wantErr  error
	}{
		{"success at once", 3, 0, errDown, 1, nil},
		{"success on the last attempt", 3, 2, errDown, 3, nil},
		{"attempts run out", 3, 5, errDown, 3, errDown},
		{"one attempt never retries", 1, 5, errDown, 1, errDown},
		{"permanent stops at once, unwrapped", 3, 5, Permanent(errDown), 1, errDown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := 0
			err := Do(context.Background(), tc.attempts, fast, func(context.Context) error {
				n++
				if n <= tc.fails {
					return tc.fail
				}
				return nil
			})
			if n != tc.wantN || err != tc.wantErr {
				t.Fatalf("%d calls, err %v; want %d, %v", n, err, tc.wantN, tc.wantErr)
			}
		})
	}
}

func TestDoGivesUpWhenTheWaitOutlivesTheDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	n := 0
	err := Do(ctx, 5, Exponential{Base: time.Millisecond, Max: time.Millisecond}, func(context.Context) error {
		n++
		return hinted{2 * time.Hour} // a Retry-After beyond the deadline
	})
	if n != 1 || err == nil {
		t.Fatalf("%d calls, err %v; want one call and its error", n, err)
	}
}

func TestDoStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := Do(ctx, 5, Exponential{Base: time.Hour, Max: time.Hour}, func(context.Context) error {
		n++
		cancel()
		return errDown
	})
	if n != 1 || err != errDown {
		t.Fatalf("%d calls, err %v; want one call and its error", n, err)
	}
}
