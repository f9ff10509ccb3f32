package relay

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

// recordingQueue stands in for asynq's client, refusing a task id it holds.
type recordingQueue struct {
	mu    sync.Mutex
	tasks map[string]Notification
}

func (q *recordingQueue) EnqueueContext(_ context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	id := ""
	for _, o := range opts {
		if o.Type() == asynq.TaskIDOpt {
			id = o.Value().(string)
		}
	}
	if _, ok := q.tasks[id]; ok {
		return nil, asynq.ErrTaskIDConflict
	}
	var n Notification
	_ = json.Unmarshal(t.Payload(), &n)
	if q.tasks == nil {
		q.tasks = map[string]Notification{}
	}
	q.tasks[id] = n
	return &asynq.TaskInfo{ID: id}, nil
}

func TestReconciler(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	now := t0
	var filters []map[string]any
	var mu sync.Mutex
	runs := []map[string]any{}
	r.prefect.Handle("POST /flow_runs/filter", func(w http.ResponseWriter, req *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(req.Body).Decode(&body)
		mu.Lock()
		filters = append(filters, body)
		page := runs
		mu.Unlock()
		off := int(body["offset"].(float64))
		lim := int(body["limit"].(float64))
		page = page[min(off, len(page)):min(off+lim, len(page))]
		prefecttest.Write(w, 200, page)
	})
	q := &recordingQueue{}
	rec := &Reconciler{
		Prefect: r.prefect.Client(), Redis: r.rdb, Queue: q, States: r.h.States,
		Interval: time.Second, Overlap: time.Minute, MaxRetry: 3, Log: r.h.Log,
		Now: func() time.Time { return now },
	}
	ctx := context.Background()

	// First start: the cursor begins now, Prefect is not even asked.
	if n, err := rec.Tick(ctx); err != nil || n != 0 || len(filters) != 0 {
		t.Fatalf("first tick: %d %v, %d scans", n, err, len(filters))
	}
	// Within the lease another worker (or tick) does nothing.
	if n, err := rec.Tick(ctx); err != nil || n != 0 || len(filters) != 0 {
		t.Fatalf("leased tick: %d %v", n, err)
	}
	r.mr.FastForward(time.Second)
	now = now.Add(90 * time.Second)
	// 450 terminal runs: more than two pages of Prefect's 200 cap; one with
	// a state outside RELAY_STATES.
	for i := 0; i < 450; i++ {
		state, typ := "Completed", "COMPLETED"
		if i == 7 {
			state, typ = "Cached", "COMPLETED"
		}
		runs = append(runs, map[string]any{
			"id": uuidN(i), "name": "run_" + state,
			"state": map[string]any{"id": "s", "name": state, "type": typ, "timestamp": t0.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)},
		})
	}
	n, err := rec.Tick(ctx)
	if err != nil || n != 449 {
		t.Fatalf("tick: %d %v", n, err)
	}
	f := filters[0]["flow_runs"].(map[string]any)
	after := f["end_time"].(map[string]any)["after_"].(string)
	// cursor - overlap would be a minute before the first start: history.
	if want := t0.Format(time.RFC3339Nano); after != want {
		t.Fatalf("scan starts %s, want the first start %s", after, want)
	}
	if types := f["state"].(map[string]any)["type"].(map[string]any)["any_"]; len(types.([]any)) != 4 {
		t.Fatalf("state filter %v", types)
	}
	// The next scan overlaps: the same runs come again, nothing new is queued
	// (their task ids are still held; once done, the store drops them).
	r.mr.FastForward(time.Second)
	now = now.Add(30 * time.Second)
	if n, err := rec.Tick(ctx); err != nil || n != 0 {
		t.Fatalf("overlap tick: %d %v", n, err)
	}
	last := filters[len(filters)-1]["flow_runs"].(map[string]any)["end_time"].(map[string]any)["after_"].(string)
	if want := t0.Add(90 * time.Second).Add(-time.Minute).Format(time.RFC3339Nano); last != want {
		t.Fatalf("cursor not advanced: %s want %s", last, want)
	}
	// A reconciled delivery and the webhook for the same state change reach Django once.
	var one Notification
	for id, n := range q.tasks {
		if n.FlowRunID == uuidN(3) {
			if err := r.h.Process(ctx, n, id, false); err != nil {
				t.Fatal(err)
			}
			one = n
		}
	}
	hook := one
	hook.Source = "template"
	if err := r.h.Process(ctx, hook, "webhook-task", false); err != nil {
		t.Fatal(err)
	}
	if got := r.django.received(); len(got) != 1 {
		t.Fatalf("Django received %+v", got)
	}
}

func uuidN(i int) string {
	return "00000000-0000-4000-8000-" + leftPad(i)
}

func leftPad(i int) string {
	s := "000000000000"
	d := []byte(s)
	for p := len(d) - 1; i > 0 && p >= 0; p-- {
		d[p] = byte('0' + i%10)
		i /= 10
	}
	return string(d)
}

func TestReconcilerLooksBackAtMost24h(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var after string
	r.prefect.Handle("POST /flow_runs/filter", func(w http.ResponseWriter, req *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(req.Body).Decode(&body)
		after = body["flow_runs"].(map[string]any)["end_time"].(map[string]any)["after_"].(string)
		prefecttest.Write(w, 200, []any{})
	})
	now := t0
	rec := &Reconciler{Prefect: r.prefect.Client(), Redis: r.rdb, Queue: &recordingQueue{}, Interval: time.Second,
		Overlap: time.Minute, Log: r.h.Log, Now: func() time.Time { return now }}
	if _, err := rec.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.mr.FastForward(time.Second)
	now = now.Add(30 * 24 * time.Hour) // every worker was down for a month
	if _, err := rec.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := now.Add(-24 * time.Hour).Format(time.RFC3339Nano); after != want {
		t.Fatalf("scan starts %s, want %s", after, want)
	}
}

func TestReconcilerSkipsKnownStateChanges(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	delivered, owned, fresh := note("Completed", t0), note("Failed", t0), note("Crashed", t0)
	owned.FlowRunID, fresh.FlowRunID = uuidN(1), uuidN(2)
	if err := r.h.Process(ctx, delivered, "hook-1", false); err != nil {
		t.Fatal(err)
	}
	r.django.setStatus(func(int) int { return 503 })
	if err := r.h.Process(ctx, owned, "hook-2", false); err == nil {
		t.Fatal("want a retryable failure")
	}
	known, err := r.h.Store.Known(ctx, []Notification{delivered, owned, fresh})
	if err != nil || !known[0] || !known[1] || known[2] {
		t.Fatalf("Known = %v, %v", known, err)
	}
}

// Runs leave the terminal set while a scan pages through it (Django retries a
// Failed run: it goes back to Scheduled). With plain offset paging every
// later row moves up and the one at the page boundary is never read.
func TestReconcilerPagingSurvivesRunsLeavingTheSet(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var mu sync.Mutex
	runs := []map[string]any{}
	for i := 0; i < 450; i++ { // newest first, as END_TIME_DESC
		runs = append(runs, map[string]any{
			"id": uuidN(i), "name": "r",
			"state": map[string]any{"name": "Failed", "type": "FAILED", "timestamp": t0.Add(-time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)},
		})
	}
	r.prefect.Handle("POST /flow_runs/filter", func(w http.ResponseWriter, req *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(req.Body).Decode(&body)
		off, lim := int(body["offset"].(float64)), int(body["limit"].(float64))
		mu.Lock()
		page := append([]map[string]any(nil), runs[min(off, len(runs)):min(off+lim, len(runs))]...)
		if off == 0 {
			runs = runs[3:] // three runs of the first page are retried meanwhile
		}
		mu.Unlock()
		prefecttest.Write(w, 200, page)
	})
	q := &recordingQueue{}
	now := t0
	rec := &Reconciler{Prefect: r.prefect.Client(), Redis: r.rdb, Queue: q, States: r.h.States,
		Interval: time.Second, Overlap: time.Minute, Log: r.h.Log, Now: func() time.Time { return now }}
	ctx := context.Background()
	if _, err := rec.Tick(ctx); err != nil { // first start
		t.Fatal(err)
	}
	r.mr.FastForward(time.Second)
	now = now.Add(30 * time.Second)
	if n, err := rec.Tick(ctx); err != nil || n != 450 {
		t.Fatalf("queued %d (%v), want every one of the 450 runs", n, err)
	}
}

func TestReconcilerWaitsForSetupThenScansFromTheSwitch(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	now := t0
	var mu sync.Mutex
	var since []string
	r.prefect.Handle("POST /flow_runs/filter", func(w http.ResponseWriter, req *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(req.Body).Decode(&body)
		mu.Lock()
		since = append(since, body["flow_runs"].(map[string]any)["end_time"].(map[string]any)["after_"].(string))
		mu.Unlock()
		prefecttest.Write(w, 200, []any{})
	})
	rec := &Reconciler{
		Prefect: r.prefect.Client(), Redis: r.rdb, Queue: &recordingQueue{}, States: r.h.States,
		Interval: time.Second, Overlap: time.Minute, MaxRetry: 3, Log: r.h.Log, AfterSetup: true,
		Now: func() time.Time { return now },
	}
	ctx := context.Background()
	// Prefect still calls Django directly: no scan, no cursor, however long it runs.
	for range 3 {
		if n, err := rec.Tick(ctx); err != nil || n != 0 {
			t.Fatalf("tick before setup: %d %v", n, err)
		}
		now = now.Add(time.Hour)
		r.mr.FastForward(time.Second)
	}
	if len(since) != 0 || r.mr.Exists(cursorKey) {
		t.Fatalf("scanned %v before relay-setup; cursor set: %v", since, r.mr.Exists(cursorKey))
	}
	switched := now.Add(-10 * time.Second)
	if err := RecordSetup(ctx, r.rdb, SetupRecord{AutomationID: "au", URL: "https://proxy/", SwitchedAt: switched}); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := SetupRecorded(ctx, r.rdb); err != nil || !ok || rec.AutomationID != "au" {
		t.Fatalf("SetupRecorded = %+v %v %v", rec, ok, err)
	}
	// The first scan starts at the switch (not at this tick, nor an overlap before it).
	if _, err := rec.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(since) != 1 {
		t.Fatalf("scans after setup: %v", since)
	}
	if got, _ := time.Parse(time.RFC3339Nano, since[0]); !got.Equal(switched.Truncate(time.Microsecond)) {
		t.Fatalf("first scan from %v, want the switch %v", since[0], switched)
	}
}

// Every worker schedules the reconciler; the maintenance queue holds one scan
// at a time, and each worker's scheduler shows in asynq (so in /monitoring/).
func TestReconcilerIsOnePeriodicTaskAcrossWorkers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "dj", "RELAY_RECONCILE_INTERVAL": "1h"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w := NewWorker(cfg, r.rdb, r.prefect.Client(), r.h.Log, nil)
		w.Start()
		t.Cleanup(w.Stop)
	}
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	info, err := insp.GetQueueInfo(jobs.QueueMaintenance)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pending != 1 {
		t.Fatalf("%d scans pending on the maintenance queue, want 1", info.Pending)
	}
	tasks, _ := insp.ListPendingTasks(jobs.QueueMaintenance)
	if len(tasks) != 1 || tasks[0].Type != TaskReconcile {
		t.Fatalf("pending tasks %+v, want one %s", tasks, TaskReconcile)
	}
	// Schedulers publish their entries with a heartbeat; wait for all three.
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, err := insp.SchedulerEntries()
		if err == nil && len(entries) == 3 {
			for _, e := range entries {
				if e.Task.Type() != TaskReconcile || e.Spec != "@every 1h0m0s" {
					t.Fatalf("scheduler entry %+v", e)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduler entries %v (%v), want 3", entries, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReconcileTaskRunsAScan(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rec := &Reconciler{Prefect: r.prefect.Client(), Redis: r.rdb, Queue: &recordingQueue{}, Interval: time.Second,
		Overlap: time.Minute, Log: r.h.Log}
	if err := rec.ProcessTask(context.Background(), asynq.NewTask(TaskReconcile, nil)); err != nil {
		t.Fatal(err)
	}
	if r.mr.Exists(cursorKey) != true {
		t.Fatal("the first scan did not take its cursor")
	}
	r.mr.Set(cursorKey, "garbage")
	r.mr.Del(reconcileLockKey)
	if err := rec.ProcessTask(context.Background(), nil); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("a failed scan: %v, want it archived (SkipRetry)", err)
	}
}
