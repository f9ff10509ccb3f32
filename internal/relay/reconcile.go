package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Reconciler finds terminal states Prefect never notified (a lost webhook, a
// Prefect restart, the automation missing) and queues their delivery.
type Reconciler struct {
	Prefect  *prefect.Client
	Redis    redis.UniversalClient
	Store    *Store // skips state changes already known; nil: queue them all (the worker drops duplicates)
	Queue    Enqueuer
	States   StateFilter
	Interval time.Duration
	// Overlap re-reads this much before the cursor: a run's end_time is
	// written a little before its row becomes visible to a reader.
	Overlap  time.Duration
	MaxRetry int
	// AfterSetup holds every scan back until relay-setup has recorded that
	// the relay is Django's path (RecordSetup): RELAY_RECONCILE_INTERVAL was
	// not set, so the operator has not said that Prefect stopped calling
	// Django directly.
	AfterSetup bool
	Log        logrus.FieldLogger
	Metrics    *Metrics
	Now        func() time.Time
	// waiting remembers that the last tick found no setup record, so the
	// switch is logged once.
	waiting bool
}

const (
	cursorKey        = "relay:reconcile:cursor" // unix µs: scans start here (minus Overlap)
	originKey        = "relay:reconcile:origin" // unix µs of the first start: no scan reaches before it
	reconcileLockKey = "relay:reconcile:lock"
)

// MaxLookback bounds how far back a scan reaches (the delivery retry window).
const MaxLookback = RetryWindow

var terminalTypes = []string{"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// TaskReconcile is the asynq task of one reconciler scan, on the
// maintenance queue. Every worker's scheduler enqueues it each interval
// (asynq.Unique drops copies while one waits); the Redis lease in Tick lets
// one scan run per interval whichever worker takes the task.
const TaskReconcile = "relay:reconcile"

// ProcessTask runs one scan (the asynq handler of TaskReconcile). A failed
// scan is archived, visible in /monitoring/; the next interval's scan
// covers its window again.
func (r *Reconciler) ProcessTask(ctx context.Context, _ *asynq.Task) error {
	if _, err := r.Tick(ctx); err != nil {
		r.Log.WithError(err).Warn("relay reconciler: scan failed")
		return fmt.Errorf("relay reconciler: %w: %w", err, asynq.SkipRetry)
	}
	return nil
}

// Tick runs one scan if this worker wins the lease; it returns how many
// deliveries it queued.
func (r *Reconciler) Tick(ctx context.Context) (int, error) {
	if r.AfterSetup {
		if on, err := r.active(ctx); !on || err != nil {
			return 0, err
		}
	}
	if won, err := r.lease(ctx); !won || err != nil {
		return 0, err
	}
	scanStart := r.now().UTC()
	start := strconv.FormatInt(scanStart.UnixMicro(), 10)
	since, first, err := r.window(ctx, scanStart, start)
	if err != nil || first {
		return 0, err
	}
	rows, err := r.scan(ctx, since)
	if err != nil {
		// Keep the lease: the next tick retries the same window.
		return 0, err
	}
	queued, err := r.queue(ctx, r.notifications(rows))
	if err != nil {
		return queued, err // cursor unchanged: the next scan redoes the window
	}
	if err := r.Redis.Set(ctx, cursorKey, start, 0).Err(); err != nil {
		return queued, err
	}
	r.Metrics.reconcileQueued(queued)
	if queued > 0 {
		r.Log.WithFields(logrus.Fields{"runs": len(rows), "queued": queued}).Info("relay reconciler: queued terminal states")
	}
	return queued, nil
}

// lease reports whether this worker may scan now. The lease outlives the
// scan on purpose (it is not released on success): a second worker ticking
// a moment later must not scan the same window.
func (r *Reconciler) lease(ctx context.Context) (bool, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	lease := max(r.Interval, time.Second)
	return r.Redis.SetNX(ctx, reconcileLockKey, hex.EncodeToString(b[:]), lease*9/10).Result()
}

// window is where this scan starts: the cursor minus the overlap, never
// before the first start nor more than MaxLookback ago. On the very first
// start it records the cursor and says so (first): there is nothing to scan.
func (r *Reconciler) window(ctx context.Context, scanStart time.Time, start string) (since time.Time, first bool, err error) {
	if err := r.Redis.SetNX(ctx, originKey, start, 0).Err(); err != nil {
		return since, false, err
	}
	if first, err = r.Redis.SetNX(ctx, cursorKey, start, 0).Result(); err != nil || first {
		if first {
			// Never replay history: it would resend every old failure e-mail.
			r.Log.WithField("cursor", scanStart).Info("relay reconciler: first start; cursor begins now")
		}
		return since, first, err
	}
	raw, err := r.Redis.Get(ctx, cursorKey).Result()
	if err != nil {
		return since, false, err
	}
	us, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return since, false, errors.New("relay reconciler: bad cursor in Redis")
	}
	since = time.UnixMicro(us).UTC().Add(-r.Overlap)
	// The overlap must not reach before the first start: runs that ended
	// then are history, which Prefect may well have sent Django directly.
	if raw, err := r.Redis.Get(ctx, originKey).Result(); err == nil {
		if o, err := strconv.ParseInt(raw, 10, 64); err == nil && since.Before(time.UnixMicro(o)) {
			since = time.UnixMicro(o).UTC()
		}
	}
	// After a long outage of every worker, look back at most MaxLookback: a
	// month of old failures would reach Django as a flood of e-mails.
	if floor := scanStart.Add(-MaxLookback); since.Before(floor) {
		r.Log.WithField("cursor", since).Warn("relay reconciler: cursor older than 24 h; scanning the last 24 h only")
		since = floor
	}
	return since, false, nil
}

// notifications are the scanned runs' states the relay forwards.
func (r *Reconciler) notifications(rows []flowRunJSON) []Notification {
	found := make([]Notification, 0, len(rows))
	for _, fr := range rows {
		n, ts := fr.notification()
		n.Source = "reconciler"
		n, err := finish(n, fr.ID, ts)
		if err != nil || !n.Complete() || !r.States.Allows(n.State) {
			continue
		}
		found = append(found, n)
	}
	return found
}

// queue queues the deliveries not made yet. Most of what a scan finds was
// delivered by the webhook (and the overlap re-reads the previous scan), or
// is owned by a delivery still retrying: those are skipped without a task.
func (r *Reconciler) queue(ctx context.Context, found []Notification) (int, error) {
	var done []bool
	if r.Store != nil && len(found) > 0 {
		var err error
		if done, err = r.Store.Known(ctx, found); err != nil {
			return 0, err
		}
	}
	queued := 0
	for i, n := range found {
		if done != nil && done[i] {
			continue
		}
		n.Received = r.now().UTC()
		q, err := Enqueue(ctx, r.Queue, n, r.MaxRetry)
		if err != nil {
			return queued, err
		}
		if q {
			queued++
		}
	}
	return queued, nil
}

// active reports whether relay-setup has made the relay Django's path, and
// logs the moment the reconciler starts (or stops) because of it.
func (r *Reconciler) active(ctx context.Context) (bool, error) {
	rec, ok, err := SetupRecorded(ctx, r.Redis)
	if err != nil {
		return false, err
	}
	switch {
	case ok && r.waiting:
		r.Log.WithFields(logrus.Fields{"automation_id": rec.AutomationID, "switched_at": rec.SwitchedAt}).
			Info("relay reconciler: relay-setup has made the relay Django's path; scanning from the switch")
	case !ok && !r.waiting:
		r.Log.Info("relay reconciler: waiting for relay-setup (no automation recorded in Redis; " +
			"set RELAY_RECONCILE_INTERVAL to run it regardless)")
	}
	r.waiting = !ok
	return ok, nil
}

// pageOverlap is how many rows each page of a scan re-reads from the end of
// the previous one.
const pageOverlap = prefect.PageSize / 10

// scan reads Prefect's runs in a terminal state that ended after since,
// newest first. Runs that end during the scan land on the first page and
// push the rest down (re-read, harmless); a run that leaves the set (Django
// retries a Failed run, which goes back to Scheduled) pulls every later row
// up, so plain offset paging would skip one row per run that left. Each page
// therefore starts pageOverlap rows before the end of the previous one, and
// rows read twice are dropped by id.
func (r *Reconciler) scan(ctx context.Context, since time.Time) ([]flowRunJSON, error) {
	filter := map[string]any{
		"state":    map[string]any{"type": map[string]any{"any_": terminalTypes}},
		"end_time": map[string]any{"after_": since.Format(time.RFC3339Nano)},
	}
	var out []flowRunJSON
	seen := map[string]bool{}
	for offset := 0; ; offset += prefect.PageSize - pageOverlap {
		var rows []json.RawMessage
		if err := r.Prefect.PostRead(ctx, "/flow_runs/filter", map[string]any{
			"flow_runs": filter, "sort": "END_TIME_DESC", "limit": prefect.PageSize, "offset": offset,
		}, &rows); err != nil {
			return nil, err
		}
		for _, row := range rows {
			var fr flowRunJSON
			if json.Unmarshal(row, &fr) != nil || seen[fr.ID] {
				continue
			}
			seen[fr.ID] = true
			out = append(out, fr)
		}
		if len(rows) < prefect.PageSize {
			return out, nil
		}
	}
}
