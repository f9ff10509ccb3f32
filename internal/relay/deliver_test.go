package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestDeliverySendsDjangosFormatOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	n := note("Completed", t0)
	if err := r.h.Process(ctx, n, "task-a", false); err != nil {
		t.Fatal(err)
	}
	// The same state change again: from a second webhook (another task) and
	// from the reconciler (the same deterministic task id, re-enqueued later).
	for _, owner := range []string{"task-b", "task-a", TaskID(n)} {
		if err := r.h.Process(ctx, n, owner, false); err != nil {
			t.Fatal(err)
		}
	}
	got := r.django.received()
	if len(got) != 1 || got[0].ID != runID || got[0].State != "Completed" || got[0].WebhookID != WebhookID(n) {
		t.Fatalf("Django received %+v", got)
	}
}

func TestStaleStatesNeverOvertakeTerminal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []Notification
		want  []string
	}{
		{"in order", []Notification{note("Pending", t0), note("Running", t0.Add(time.Second)), note("Completed", t0.Add(2*time.Second))},
			[]string{"Pending", "Running", "Completed"}},
		{"late Running after Completed is dropped", []Notification{note("Completed", t0.Add(2*time.Second)), note("Running", t0.Add(time.Second)), note("Pending", t0)},
			[]string{"Completed"}},
		{"re-entry after Failed with a newer timestamp is delivered",
			[]Notification{note("Running", t0), note("Failed", t0.Add(time.Second)), note("Running", t0.Add(time.Minute)), note("Completed", t0.Add(2*time.Minute))},
			[]string{"Running", "Failed", "Running", "Completed"}},
		{"a Failed superseded by a later Completed is dropped", []Notification{note("Completed", t0.Add(time.Minute)), note("Failed", t0)},
			[]string{"Completed"}},
		{"non-terminal states out of order among themselves still go", []Notification{note("Running", t0.Add(time.Second)), note("Pending", t0)},
			[]string{"Running", "Pending"}},
		// Failed's delivery was late (Django down, Prefect's concurrent
		// actions) and the run was re-run meanwhile: the old Failed would
		// clear the running re-run's locks and trigger Django's crash retry.
		{"a terminal state older than a re-run already sent is dropped",
			[]Notification{note("Running", t0), note("Running", t0.Add(time.Minute)), note("Failed", t0.Add(time.Second)), note("Completed", t0.Add(2*time.Minute))},
			[]string{"Running", "Running", "Completed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			for i, n := range tc.steps {
				if err := r.h.Process(context.Background(), n, fmt.Sprintf("task-%d", i), false); err != nil {
					t.Fatal(err)
				}
			}
			var states []string
			for _, g := range r.django.received() {
				states = append(states, g.State)
			}
			if fmt.Sprint(states) != fmt.Sprint(tc.want) {
				t.Fatalf("Django received %v, want %v", states, tc.want)
			}
		})
	}
}

func TestConcurrentDuplicatesReachDjangoOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	states := []Notification{note("Pending", t0), note("Running", t0.Add(time.Second)), note("Completed", t0.Add(2*time.Second))}
	var wg sync.WaitGroup
	for copy := 0; copy < 8; copy++ {
		for i, n := range states {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.h.Process(context.Background(), n, fmt.Sprintf("w%d-%d", copy, i), false); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	count := map[string]int{}
	got := r.django.received()
	for _, g := range got {
		count[g.State]++
	}
	if count["Completed"] != 1 || count["Running"] > 1 || count["Pending"] > 1 {
		t.Fatalf("Django received %v", count)
	}
	// Whatever interleaving happened, nothing came after the terminal state.
	if got[len(got)-1].State != "Completed" {
		t.Fatalf("a stale state overtook Completed: %+v", got)
	}
}

func TestDjangoAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		permanent bool
	}{
		{"500 is retried", 500, false},
		{"503 is retried", 503, false},
		{"429 is retried", 429, false},
		{"302 is a failure, not followed", 302, false},
		{"404 is retried", 404, false},
		{"400 is archived at once", 400, true},
		{"401 is archived at once", 401, true},
		{"403 is archived at once", 403, true},
		{"410 is archived at once", 410, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.django.setStatus(func(call int) int {
				if call == 1 {
					return tc.status
				}
				return 200
			})
			n := note("Completed", t0)
			err := r.h.Process(context.Background(), n, "task-a", false)
			var de *DeliveryError
			if !errors.As(err, &de) || de.Status != tc.status {
				t.Fatalf("err = %v", err)
			}
			if got := errors.Is(err, asynq.SkipRetry); got != tc.permanent {
				t.Fatalf("SkipRetry = %v, want %v", got, tc.permanent)
			}
			// The retry (same task) gets through once Django is fine again,
			// with the same Webhook-Id.
			if err := r.h.Process(context.Background(), n, "task-a", false); err != nil {
				t.Fatal(err)
			}
			if got := r.django.received(); len(got) != 1 || got[0].WebhookID != WebhookID(n) {
				t.Fatalf("Django received %+v", got)
			}
		})
	}
}

func TestWrongKeyIsRejectedByDjango(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.h.Django.Key = "wrong"
	err := r.h.Process(context.Background(), note("Completed", t0), "task-a", false)
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("a 400 from Django must archive at once, got %v", err)
	}
}

func TestDjangoUnreachableIsRetried(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.h.Django.URL = "http://127.0.0.1:1/webhooks/v1/notification/"
	err := r.h.Process(context.Background(), note("Completed", t0), "task-a", false)
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 0 || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v", err)
	}
}

func TestIncompleteNotificationIsResolvedFromPrefect(t *testing.T) {
	t.Parallel()
	run := map[string]any{"id": runID, "name": "glossy_bittern", "state_name": "Completed", "state_type": "COMPLETED",
		"state": map[string]any{"id": "s3", "name": "Completed", "type": "COMPLETED", "timestamp": "2026-11-27T12:00:02Z"}}
	history := []map[string]any{
		{"id": "s1", "name": "Running", "type": "RUNNING", "timestamp": "2026-11-27T12:00:00Z"},
		{"id": "s2", "name": "Running", "type": "RUNNING", "timestamp": "2026-11-27T12:00:01Z"},
		{"id": "s3", "name": "Completed", "type": "COMPLETED", "timestamp": "2026-11-27T12:00:02Z"},
	}
	t.Run("current state: name, timestamp and id from the run", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		r.prefect.JSON("GET /flow_runs/{id}", 200, run)
		n, _ := Parse([]byte(`{"body": "Flow run glossy_bittern with id ` + runID + ` entered state Completed"}`))
		if err := r.h.Process(context.Background(), n, "t1", false); err != nil {
			t.Fatal(err)
		}
		// The template for the same state change is a duplicate.
		dup := note("Completed", time.Date(2026, 11, 27, 12, 0, 2, 0, time.UTC))
		if err := r.h.Process(context.Background(), dup, "t2", false); err != nil {
			t.Fatal(err)
		}
		if got := r.django.received(); len(got) != 1 || got[0].State != "Completed" {
			t.Fatalf("Django received %+v", got)
		}
	})
	t.Run("older state: timestamp from the history, then stale", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		r.prefect.JSON("GET /flow_runs/{id}", 200, run)
		r.prefect.JSON("GET /flow_run_states/", 200, history)
		done, _ := Parse([]byte(`{"body": "Flow run x with id ` + runID + ` entered state Completed"}`))
		late, _ := Parse([]byte(`{"body": "Flow run x with id ` + runID + ` entered state Running"}`))
		for i, n := range []Notification{done, late} {
			if err := r.h.Process(context.Background(), n, fmt.Sprint(i), false); err != nil {
				t.Fatal(err)
			}
		}
		if got := r.django.received(); len(got) != 1 || got[0].State != "Completed" {
			t.Fatalf("Django received %+v", got)
		}
		if c := r.prefect.CallsTo("GET", "/flow_run_states/"); len(c) != 1 || c[0].Query.Get("flow_run_id") != runID {
			t.Fatalf("history calls %+v", c)
		}
	})
	t.Run("deleted run: dropped", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		r.prefect.JSON("GET /flow_runs/{id}", 404, map[string]any{"detail": "Flow run not found"})
		n, _ := Parse([]byte(`{"body": "Flow run x with id ` + runID + ` entered state Completed"}`))
		if err := r.h.Process(context.Background(), n, "t1", false); err != nil {
			t.Fatal(err)
		}
		if got := r.django.received(); len(got) != 0 {
			t.Fatalf("Django received %+v", got)
		}
	})
	t.Run("Prefect down: retried", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		r.prefect.Handle("GET /flow_runs/{id}", func(w http.ResponseWriter, _ *http.Request) {
			prefecttest.Write(w, 503, map[string]any{"exception_message": "Service Unavailable"})
		})
		n, _ := Parse([]byte(`{"body": "Flow run x with id ` + runID + ` entered state Completed"}`))
		if err := r.h.Process(context.Background(), n, "t1", false); err == nil || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRelayStatesFilter(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.h.States = NewStateFilter([]string{"Completed"})
	for i, n := range []Notification{note("Running", t0), note("Completed", t0.Add(time.Second))} {
		if err := r.h.Process(context.Background(), n, fmt.Sprint(i), false); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.django.received(); len(got) != 1 || got[0].State != "Completed" {
		t.Fatalf("Django received %+v", got)
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	sched := []time.Duration{5 * time.Second, 30 * time.Second, time.Hour}
	for n, want := range []time.Duration{5 * time.Second, 30 * time.Second, time.Hour, time.Hour, time.Hour} {
		for i := 0; i < 50; i++ {
			d := RetryDelay(sched, n, nil)
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("retry %d: %s not within ±20%% of %s", n, d, want)
			}
		}
	}
	if d := RetryDelay(sched, 0, &DeliveryError{Status: 429, RetryAfter: time.Minute}); d != time.Minute {
		t.Fatalf("Retry-After longer than the schedule must win: %s", d)
	}
	if d := RetryDelay(sched, 2, &DeliveryError{Status: 429, RetryAfter: time.Second}); d < 48*time.Minute {
		t.Fatalf("a shorter Retry-After must not shorten the schedule: %s", d)
	}
	// Default schedule: 5s,30s,2m,10m,30m,1h then hourly → about 24 h in all.
	def := []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}
	if n := MaxRetries(def); n != 28 {
		t.Fatalf("MaxRetries(default) = %d", n)
	}
}

// The 24 h retry window counts from receipt: a Django that keeps answering
// Retry-After (up to 6 h a time) must not stretch it to days. Past the
// window a failed attempt archives the delivery at once.
func TestRetryWindowEndsTwentyFourHoursAfterReceipt(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.django.setStatus(func(int) int { return 503 })
	fresh := note("Completed", t0)
	fresh.Received = time.Now().Add(-time.Hour)
	if err := r.h.Process(context.Background(), fresh, "task-a", false); err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("inside the window: err = %v, want a retryable error", err)
	}
	old := note("Failed", t0.Add(time.Second))
	old.Received = time.Now().Add(-RetryWindow - time.Minute)
	err := r.h.Process(context.Background(), old, "task-b", false)
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 503 || !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("past the window: err = %v, want the 503 with SkipRetry (archive)", err)
	}
}
