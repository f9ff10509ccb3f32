package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/adaptive"
	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

func testKey() []byte { return bytes.Repeat([]byte{7}, 32) }

// rig is miniredis, an api-side Client and a worker (asynq server + Runner).
type rig struct {
	mr     *miniredis.Miniredis
	client *Client
	reg    *prometheus.Registry
}

func newRig(t *testing.T, maxAttempts int, ops ...Op[any]) *rig {
	t.Helper()
	return newRigWith(t, rigOpts{maxAttempts: maxAttempts, retention: time.Hour}, ops...)
}

type rigOpts struct {
	maxAttempts int
	retention   time.Duration
	workerKey   []byte // default testKey()
	retryWindow time.Duration
	now         func() time.Time
	limiter     *adaptive.Limiter
}

func newRigWith(t *testing.T, o rigOpts, ops ...Op[any]) *rig {
	t.Helper()
	if o.workerKey == nil {
		o.workerKey = testKey()
	}
	mr := miniredis.RunT(t)
	opt, err := RedisOpt("redis://" + mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { _ = rdb.Close() })
	reg := prometheus.NewRegistry()
	runner, err := NewRunner(RunnerConfig{Key: o.workerKey, Redis: rdb, Log: log, Registry: reg, RetryWindow: o.retryWindow, Now: o.now, Limiter: o.limiter})
	if err != nil {
		t.Fatal(err)
	}
	opsReg := registry(ops...)
	mux := asynq.NewServeMux()
	runner.Mount(opsReg, func(kind string, h asynq.Handler, _ asynq.RetryDelayFunc) { mux.Handle(kind, h) })
	srv := NewServer(rdb, ServerConfig{Concurrency: 4, Log: log, RetryDelay: RetryDelay, ShutdownTimeout: time.Second})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	// A long fallback poll proves completion is noticed through pub/sub.
	c, err := NewClient(context.Background(), rdb, ClientConfig{
		Key: testKey(), Ops: opsReg, MaxAttempts: o.maxAttempts, Retention: o.retention, PollInterval: time.Minute, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &rig{mr: mr, client: c, reg: reg}
}

// echoOp is a test op whose payload is any JSON; run sees it as raw JSON and
// the job's run key. It retries what a write op retries.
func echoOp(name string, run func(ctx context.Context, p json.RawMessage, id string) (any, error)) Op[any] {
	op := Op[any]{Kind: name, Queue: QueueDefault, Retry: RetryPolicy{Retryable: prefect.Retryable}}
	op.Work = func(ctx context.Context, p any, r Run) (any, error) {
		raw, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		return run(ctx, raw, r.Key)
	}
	return op
}

func registry(ops ...Op[any]) *Registry {
	reg := NewRegistry()
	for _, op := range ops {
		Register(reg, op)
	}
	return reg
}

func TestSealerRoundTripAndBinding(t *testing.T) {
	t.Parallel()
	s, err := NewSealer(testKey())
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal([]byte("hunter2"), []byte("a"))
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("plaintext visible in sealed blob")
	}
	if got, err := s.Open(sealed, []byte("a")); err != nil || string(got) != "hunter2" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.Open(sealed, []byte("b")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("other aad opened: %v", err)
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open(sealed, []byte("a")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("other key opened: %v", err)
	}
	if _, err := NewSealer([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestJobSucceedsAndWakesWaiterThroughPubSub(t *testing.T) {
	t.Parallel()
	var gotID atomic.Value
	op := echoOp("t:ok", func(_ context.Context, p json.RawMessage, id string) (any, error) {
		gotID.Store(id)
		var in map[string]string
		_ = json.Unmarshal(p, &in)
		return map[string]any{"echo": in["x"]}, nil
	})
	r := newRig(t, 3, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, map[string]string{"x": "y"}, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	j, err := r.client.Wait(ctx, e, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Done() || j.State != StateSucceeded || j.Status != 200 || string(j.Body) != `{"echo":"y"}` {
		t.Fatalf("job %+v body %s", j, j.Body)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("waited %s: the pub/sub wake-up did not work (fallback poll is 1 min)", el)
	}
	if gotID.Load() != e.ID || j.Attempts != 1 || j.CompletedAt.IsZero() || j.CreatedAt.IsZero() {
		t.Fatalf("run saw id %v, job %+v", gotID.Load(), j)
	}
	v := j.View()
	b, _ := json.Marshal(v)
	if !strings.Contains(string(b), `"state":"succeeded"`) || !strings.Contains(string(b), `"result":{"echo":"y"}`) ||
		!strings.Contains(string(b), `"error":null`) {
		t.Fatalf("view %s", b)
	}
	// Get finds it without knowing the queue.
	if g, err := r.client.Get(ctx, e.ID); err != nil || g.State != StateSucceeded {
		t.Fatalf("get: %+v %v", g, err)
	}
	if _, err := r.client.Get(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := r.client.Get(ctx, "not-a-uuid"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}

func TestRetryOn503ThenSuccess(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var mu sync.Mutex
	var attempts []int
	op := echoOp("t:flaky", nil)
	op.Work = func(_ context.Context, _ any, run Run) (any, error) {
		mu.Lock()
		attempts = append(attempts, run.Attempt)
		mu.Unlock()
		if calls.Add(1) == 1 {
			return nil, &prefect.APIError{Method: "POST", Path: "/x", Status: http.StatusServiceUnavailable}
		}
		return map[string]int{"success": 1}, nil
	}
	r := newRig(t, 5, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, nil, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	j, err := r.client.Wait(ctx, e, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != StateSucceeded || j.Attempts != 2 || string(j.Body) != `{"success":1}` {
		t.Fatalf("job %+v %s", j, j.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2]" {
		t.Fatalf("ops saw attempts %v", attempts)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("first retry took %s; want within about a second", el)
	}
	if n := counterValue(t, r.reg, "proxy_jobs_processed_total", map[string]string{"type": "t:flaky", "outcome": "retrying"}); n != 1 {
		t.Fatalf("retrying attempts metric %v", n)
	}
}

func TestClientErrorFailsAtOnceAndIsReplayed(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	op := echoOp("t:bad", func(context.Context, json.RawMessage, string) (any, error) {
		calls.Add(1)
		return nil, apperr.Wrap(apperr.BadRequest, &prefect.APIError{Status: 409}, "failed to create deployment")
	})
	r := newRig(t, 10, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, nil, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := r.client.Wait(ctx, e, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != StateFailed || j.Status != 400 || string(j.Body) != `{"detail":"failed to create deployment"}` || j.Attempts != 1 {
		t.Fatalf("job %+v %s", j, j.Body)
	}
	// asynq archives it with no retries burned (wait for it to leave "active").
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := r.client.insp.GetTaskInfo(QueueDefault, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == asynq.TaskStateArchived {
			if info.Retried != 0 || calls.Load() != 1 {
				t.Fatalf("retried %d, calls %d", info.Retried, calls.Load())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %v, want archived", info.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g, _ := r.client.Get(ctx, e.ID); g.View().Error == nil || g.View().Error.Status != 400 {
		t.Fatalf("view error: %+v", g.View())
	}
}

func TestAttemptsExhaustedReplaysUpstreamAnswer(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	op := echoOp("t:down", func(context.Context, json.RawMessage, string) (any, error) {
		calls.Add(1)
		return nil, &prefect.APIError{Method: "POST", Path: "/x", Status: http.StatusBadGateway}
	})
	r := newRig(t, 2, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, nil, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := r.client.Wait(ctx, e, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != StateFailed || j.Status != 502 || j.Attempts != 2 || calls.Load() != 2 {
		t.Fatalf("job %+v %s calls %d", j, j.Body, calls.Load())
	}
}

// A retryable failure is retried while the job is younger than its retry
// window, whatever JOB_MAX_ATTEMPTS allows; past the window it fails with
// its last error and no further attempt. The clock is a fake one that the
// op moves forward, as a long Prefect outage would.
func TestRetryWindowEndsRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		skip         time.Duration // the clock moves this far during attempt 2
		wantState    State
		wantStatus   int
		wantAttempts int
	}{
		{"still failing when the window passes", 31 * time.Minute, StateFailed, http.StatusBadGateway, 2},
		{"inside the window it keeps retrying", 29 * time.Minute, StateSucceeded, http.StatusOK, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var offset atomic.Int64
			now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			var calls atomic.Int32
			op := echoOp("t:outage", func(context.Context, json.RawMessage, string) (any, error) {
				switch calls.Add(1) {
				case 2:
					offset.Store(int64(tc.skip))
				case 3:
					return map[string]int{"success": 1}, nil
				}
				return nil, &prefect.APIError{Method: "POST", Path: "/x", Status: http.StatusServiceUnavailable}
			})
			r := newRigWith(t, rigOpts{maxAttempts: 100, retention: time.Hour, retryWindow: 30 * time.Minute, now: now}, op)
			ctx := context.Background()
			e, err := Enqueue[any](ctx, r.client, op, nil, EnqueueOptions{})
			if err != nil {
				t.Fatal(err)
			}
			j, err := r.client.Wait(ctx, e, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if j.State != tc.wantState || j.Status != tc.wantStatus || j.Attempts != tc.wantAttempts {
				t.Fatalf("job %+v %s, calls %d", j, j.Body, calls.Load())
			}
			if tc.wantState != StateFailed {
				return
			}
			// Archived at once (SkipRetry), not left to retry up to MaxRetry.
			deadline := time.Now().Add(5 * time.Second)
			for {
				info, err := r.client.insp.GetTaskInfo(QueueDefault, e.ID)
				if err != nil {
					t.Fatal(err)
				}
				if info.State == asynq.TaskStateArchived {
					if info.Retried != 1 || calls.Load() != 2 || info.MaxRetry != 99 {
						t.Fatalf("retried %d of %d, calls %d", info.Retried, info.MaxRetry, calls.Load())
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("state %v, want archived", info.State)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestWaitRunsOutWhileJobGoesOn(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	op := echoOp("t:slow", func(ctx context.Context, _ json.RawMessage, _ string) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "done", nil
	})
	r := newRig(t, 3, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, nil, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := r.client.Wait(ctx, e, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if j.Done() || (j.State != StateRunning && j.State != StateQueued) {
		t.Fatalf("job %+v", j)
	}
	close(release)
	j, err = r.client.Wait(ctx, e, 10*time.Second)
	if err != nil || j.State != StateSucceeded || string(j.Body) != `"done"` {
		t.Fatalf("job %+v %v", j, err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	op := echoOp("t:idem", func(context.Context, json.RawMessage, string) (any, error) {
		return map[string]int32{"n": calls.Add(1)}, nil
	})
	r := newRig(t, 3, op)
	ctx := context.Background()
	key := EnqueueOptions{IdempotencyKey: "abc-123"}
	e1, err := Enqueue[any](ctx, r.client, op, map[string]int{"a": 1}, key)
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := r.client.Wait(ctx, e1, 10*time.Second)
	e2, err := Enqueue[any](ctx, r.client, op, map[string]int{"a": 1}, key)
	if err != nil {
		t.Fatal(err)
	}
	if e2.ID != e1.ID || !e2.Existing {
		t.Fatalf("repeat gave %+v, first %+v", e2, e1)
	}
	j2, _ := r.client.Wait(ctx, e2, 10*time.Second)
	if string(j1.Body) != `{"n":1}` || string(j2.Body) != `{"n":1}` || calls.Load() != 1 {
		t.Fatalf("bodies %s %s calls %d", j1.Body, j2.Body, calls.Load())
	}
	_, err = Enqueue[any](ctx, r.client, op, map[string]int{"a": 2}, key)
	if apperr.CodeOf(err) != apperr.Invalid {
		t.Fatalf("different body: %v", err)
	}
	e3, err := Enqueue[any](ctx, r.client, op, map[string]int{"a": 2}, EnqueueOptions{IdempotencyKey: "other"})
	if err != nil || e3.ID == e1.ID || e3.Existing {
		t.Fatalf("other key: %+v %v", e3, err)
	}
}

// TestSecretNeverReachesRedis runs a job whose payload and result carry a
// secret, then scans every key and value in Redis for it.
func TestSecretNeverReachesRedis(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55w0rd-zyx"
	var calls atomic.Int32
	op := echoOp("block:secret:test", func(_ context.Context, p json.RawMessage, _ string) (any, error) {
		if calls.Add(1) == 1 {
			return nil, &prefect.APIError{Method: "POST", Path: "/block_documents/", Status: 503,
				Body: `{"detail":"` + secret + `"}`}
		}
		var in map[string]string
		_ = json.Unmarshal(p, &in)
		return map[string]string{"echo": in["secret"]}, nil
	})
	r := newRig(t, 3, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, map[string]string{"secret": secret}, EnqueueOptions{IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := r.client.Wait(ctx, e, 15*time.Second)
	if err != nil || j.State != StateSucceeded || !strings.Contains(string(j.Body), secret) {
		t.Fatalf("job %+v %v", j, err)
	}
	time.Sleep(100 * time.Millisecond) // let asynq move it to "completed"
	dump := dumpRedis(t, r.mr)
	if strings.Contains(dump, secret) {
		t.Fatal("the secret is stored in Redis in clear")
	}
	if !strings.Contains(dump, e.ID) {
		t.Fatal("scan saw nothing of the job: the scan is broken")
	}
}

// dumpRedis concatenates every key and value in miniredis.
func dumpRedis(t *testing.T, mr *miniredis.Miniredis) string {
	t.Helper()
	var b strings.Builder
	for _, k := range mr.Keys() {
		b.WriteString(k + "\n")
		switch mr.Type(k) {
		case "string":
			v, _ := mr.Get(k)
			b.WriteString(v)
		case "hash":
			fs, _ := mr.HKeys(k)
			for _, f := range fs {
				b.WriteString(f + "=" + mr.HGet(k, f) + "\n")
			}
		case "list":
			vs, _ := mr.List(k)
			b.WriteString(strings.Join(vs, "\n"))
		case "set":
			vs, _ := mr.Members(k)
			b.WriteString(strings.Join(vs, "\n"))
		case "zset":
			vs, _ := mr.ZMembers(k)
			b.WriteString(strings.Join(vs, "\n"))
		default:
			t.Fatalf("key %s of type %s not scanned", k, mr.Type(k))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestRetryDelayPolicy(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]time.Duration{0: 500 * time.Millisecond, 1: time.Second, 3: 4 * time.Second, 6: 32 * time.Second, 7: RetryDelayCap, 30: RetryDelayCap} {
		for i := 0; i < 50; i++ {
			d := RetryDelay(n, nil, nil)
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("retry %d: %s not within ±20%% of %s", n, d, want)
			}
		}
	}
}

// counterValue reads the counter of reg with exactly these labels.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestWorkerWithAnotherKeyFailsTheJobClearly(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	op := echoOp("t:key", func(context.Context, json.RawMessage, string) (any, error) {
		calls.Add(1)
		return "ran", nil
	})
	r := newRigWith(t, rigOpts{maxAttempts: 5, retention: time.Hour, workerKey: bytes.Repeat([]byte{9}, 32)}, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, map[string]string{"secret": "x"}, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := r.client.Wait(ctx, e, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The api cannot open a result sealed with the worker's key either, so it
	// reports the job by asynq's state: failed at once, no retries burned.
	if j.State != StateFailed || j.Attempts != 1 || calls.Load() != 0 || j.Status != 500 ||
		!strings.Contains(string(j.Body), "payload cannot be opened") {
		t.Fatalf("job %+v %s, op ran %d times", j, j.Body, calls.Load())
	}
}

func TestFailedJobExpiresAfterRetentionAndFreesItsKey(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var mu sync.Mutex
	var ids []string // what each run saw as its job id
	op := echoOp("t:exp", func(_ context.Context, _ json.RawMessage, id string) (any, error) {
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		switch calls.Add(1) {
		case 1:
			return nil, apperr.New(apperr.BadRequest, "failed to do it")
		case 2:
			return nil, &prefect.APIError{Method: "POST", Path: "/x", Status: http.StatusServiceUnavailable}
		}
		return "second", nil
	})
	r := newRigWith(t, rigOpts{maxAttempts: 3, retention: time.Second}, op)
	ctx := context.Background()
	key := EnqueueOptions{IdempotencyKey: "exp-1"}
	e, err := Enqueue[any](ctx, r.client, op, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := r.client.Wait(ctx, e, 10*time.Second); j == nil || j.State != StateFailed {
		t.Fatalf("job %+v", j)
	}
	// Wait for asynq to archive it, then for the retention to pass.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := r.client.Get(ctx, e.ID); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("failed job still visible after JOB_RETENTION")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Past JOB_RETENTION the key is free, whatever the body (as for a
	// succeeded job, which asynq deletes then).
	e2, err := Enqueue[any](ctx, r.client, op, map[string]string{"other": "body"}, key)
	if err != nil || e2.ID != e.ID || e2.Existing {
		t.Fatalf("re-enqueue after expiry: %+v %v", e2, err)
	}
	if j, _ := r.client.Wait(ctx, e2, 10*time.Second); j == nil || j.State != StateSucceeded || string(j.Body) != `"second"` {
		t.Fatalf("new job %+v", j)
	}
	// The new job's runs share an id (a retry reuses Prefect's
	// idempotency_key), and it is not the expired job's: that would answer
	// the new job with the old job's flow run.
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 || ids[1] != ids[2] || ids[0] == ids[1] || ids[0] == "" {
		t.Fatalf("runs saw job ids %q", ids)
	}
}

// A task asynq completed without an answer the api can read (the worker's
// result write hit a Redis blip) must not look like a 200 with status 0.
func TestCompletedJobWithoutAnswerIsAClear5xx(t *testing.T) {
	t.Parallel()
	op := echoOp("t:noanswer", nil)
	mr := miniredis.RunT(t)
	opt, err := RedisOpt("redis://" + mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { _ = rdb.Close() })
	mux := asynq.NewServeMux()
	mux.HandleFunc(op.Kind, func(context.Context, *asynq.Task) error { return nil }) // no result written
	srv := NewServer(rdb, ServerConfig{Concurrency: 1, Log: log, ShutdownTimeout: time.Second})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	c, err := NewClient(context.Background(), rdb, ClientConfig{Key: testKey(), Ops: registry(op),
		Retention: time.Hour, PollInterval: 20 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, c, op, nil, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.Wait(ctx, e, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Done() || j.Status < 500 || !strings.Contains(string(j.Body), "detail") {
		t.Fatalf("job %+v body %s", j, j.Body)
	}
	if v := j.View(); v.Error == nil || v.Error.Status != j.Status || string(v.Result) != "null" {
		t.Fatalf("view %+v", v)
	}
}

// A Redis blip while the api waits must not end the wait with an error: the
// job goes on, and the waiter gets its answer once Redis is back.
func TestWaitSurvivesARedisBlip(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{})
	op := echoOp("t:blip", func(context.Context, json.RawMessage, string) (any, error) {
		close(started)
		<-release
		return "done", nil
	})
	r := newRig(t, 3, op)
	ctx := context.Background()
	e, err := Enqueue[any](ctx, r.client, op, nil, EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	r.mr.SetError("LOADING Redis is loading the dataset in memory")
	type res struct {
		j   *Job
		err error
	}
	got := make(chan res, 1)
	go func() {
		j, err := r.client.Wait(ctx, e, 10*time.Second)
		got <- res{j, err}
	}()
	time.Sleep(300 * time.Millisecond)
	r.mr.SetError("")
	close(release)
	select {
	case g := <-got:
		if g.err != nil || g.j == nil || g.j.State != StateSucceeded || string(g.j.Body) != `"done"` {
			t.Fatalf("after the blip: %+v %v", g.j, g.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("wait never returned")
	}
	// With Redis down for the whole wait, the error comes back when it runs out.
	r.mr.SetError("LOADING Redis is loading the dataset in memory")
	defer r.mr.SetError("")
	start := time.Now()
	if _, err := r.client.Wait(ctx, e, 500*time.Millisecond); err == nil || apperr.CodeOf(err) != apperr.Unavailable {
		t.Fatalf("redis down: %v", err)
	}
	if el := time.Since(start); el < 400*time.Millisecond || el > 5*time.Second {
		t.Fatalf("redis down: returned after %s", el)
	}
}

// Concurrent repeats of an Idempotency-Key whose failed job has expired: one
// new job, and every caller gets its id (none a 503 from the id conflict).
func TestConcurrentReuseOfAnExpiredKey(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	op := echoOp("t:race", func(context.Context, json.RawMessage, string) (any, error) {
		if calls.Add(1) == 1 {
			return nil, apperr.New(apperr.BadRequest, "failed to do it")
		}
		return "again", nil
	})
	r := newRigWith(t, rigOpts{maxAttempts: 3, retention: 2 * time.Second}, op)
	ctx := context.Background()
	key := EnqueueOptions{IdempotencyKey: "race-1"}
	e, err := Enqueue[any](ctx, r.client, op, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := r.client.Wait(ctx, e, 10*time.Second); j == nil || j.State != StateFailed {
		t.Fatalf("job %+v", j)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := r.client.Get(ctx, e.ID); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("failed job still visible after JOB_RETENTION")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const n = 16
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			e2, err := Enqueue[any](ctx, r.client, op, nil, key)
			if err == nil && e2.ID != e.ID {
				err = fmt.Errorf("id %s, want %s", e2.ID, e.ID)
			}
			errs <- err
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// One new job, run once.
	if j, _ := r.client.Wait(ctx, e, 10*time.Second); j == nil || j.State != StateSucceeded {
		t.Fatalf("new job %+v", j)
	}
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("op ran %d times, want 2 (the expired job's and one new)", n)
	}
}

// GET /jobs/{id}'s state and attempts in every asynq state.
func TestJobStateInEveryAsynqState(t *testing.T) {
	t.Parallel()
	s, err := NewSealer(testKey())
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{cfg: ClientConfig{Retention: time.Hour}, sealer: s}
	const id = "5f6f3863-1db2-40a1-a1b6-7f6e84972c54"
	result := func(o outcome) []byte {
		b, _ := json.Marshal(o)
		return s.Seal(b, resultAAD(id))
	}
	failed503 := result(outcome{Status: 503, Body: detailBody("Prefect is unavailable (503)"), Attempt: 1})
	ok := result(outcome{Final: true, Status: 200, Body: json.RawMessage(`{"success":1}`), Attempt: 2})
	now := time.Now()
	for _, tc := range []struct {
		name     string
		info     asynq.TaskInfo
		state    State
		attempts int
		status   int
	}{
		{"pending", asynq.TaskInfo{State: asynq.TaskStatePending}, StateQueued, 0, 0},
		{"scheduled", asynq.TaskInfo{State: asynq.TaskStateScheduled}, StateQueued, 0, 0},
		{"aggregating", asynq.TaskInfo{State: asynq.TaskStateAggregating}, StateQueued, 0, 0},
		{"active", asynq.TaskInfo{State: asynq.TaskStateActive}, StateRunning, 1, 0},
		{"retry", asynq.TaskInfo{State: asynq.TaskStateRetry, Retried: 1, Result: failed503}, StateRetrying, 1, 503},
		{"pending again", asynq.TaskInfo{State: asynq.TaskStatePending, Retried: 1, Result: failed503}, StateRetrying, 1, 503},
		{"active again", asynq.TaskInfo{State: asynq.TaskStateActive, Retried: 1, Result: failed503}, StateRunning, 2, 503},
		{"answered, not yet completed", asynq.TaskInfo{State: asynq.TaskStateActive, Retried: 1, Result: ok}, StateSucceeded, 2, 200},
		{"completed", asynq.TaskInfo{State: asynq.TaskStateCompleted, Retried: 1, Result: ok, CompletedAt: now}, StateSucceeded, 2, 200},
		{"archived", asynq.TaskInfo{State: asynq.TaskStateArchived, Retried: 9, LastFailedAt: now,
			Result: result(outcome{Final: true, Status: 502, Body: detailBody("Prefect failed (500)"), Attempt: 10})}, StateFailed, 10, 502},
		{"archived, cut off", asynq.TaskInfo{State: asynq.TaskStateArchived, Retried: 2, LastFailedAt: now,
			LastErr: "context deadline exceeded"}, StateFailed, 3, 504},
		{"archived, lease expired", asynq.TaskInfo{State: asynq.TaskStateArchived, LastFailedAt: now,
			LastErr: "asynq: task lease expired"}, StateFailed, 1, 504},
	} {
		info := tc.info
		info.ID, info.Type, info.Queue = id, "t:x", QueueDefault
		j, err := c.jobOf(&info)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != tc.state || j.Attempts != tc.attempts || j.Status != tc.status {
			t.Errorf("%s: state %s attempts %d status %d; want %s %d %d", tc.name, j.State, j.Attempts, j.Status,
				tc.state, tc.attempts, tc.status)
		}
		if j.Done() != (tc.state == StateSucceeded || tc.state == StateFailed) {
			t.Errorf("%s: Done() = %v", tc.name, j.Done())
		}
		if v := j.View(); (v.Error != nil) != (tc.status != 0 && tc.status != 200) {
			t.Errorf("%s: view error %+v", tc.name, v.Error)
		}
	}
}

// A payload that does not decode into the op's type (a bug, or a job from an
// incompatible version) fails at once: retrying cannot help.
func TestBadPayloadIsNotRetryable(t *testing.T) {
	t.Parallel()
	op := Op[struct{ ID string }]{Kind: "t:typed", Retry: RetryPolicy{Retryable: prefect.Retryable},
		Work: func(context.Context, struct{ ID string }, Run) (any, error) { return nil, nil }}
	_, err := op.work(context.Background(), []byte(`[1]`), Run{Key: "j", Attempt: 1})
	if err == nil || op.retryable(err) || apperr.CodeOf(err) != apperr.Internal {
		t.Fatalf("got %v", err)
	}
}

// limitedCall is what a write op does with Prefect: one HTTP call through
// the adaptive transport, with the job's context.
func limitedCall(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: adaptive.Transport(http.DefaultTransport)}).Do(req)
	if err != nil {
		return &prefect.TransportError{Method: "POST", Path: "/x", Err: err}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return &prefect.APIError{Method: "POST", Path: "/x", Status: resp.StatusCode}
	}
	return nil
}

func TestAdaptiveLimitLearnsFromTheJobsCalls(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		wantLimit int
	}{
		{name: "success keeps the limit", status: http.StatusOK, wantLimit: 4},
		{name: "Prefect's 503 cuts it", status: http.StatusServiceUnavailable, wantLimit: 3},
		{name: "a 429 cuts it", status: http.StatusTooManyRequests, wantLimit: 3},
		{name: "a 404 is an answer: the limit holds", status: http.StatusNotFound, wantLimit: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.status) }))
			defer up.Close()
			lim := adaptive.New(adaptive.Config{Max: 4, Initial: 4})
			op := echoOp("t:limited", nil)
			op.Work = func(ctx context.Context, _ any, _ Run) (any, error) {
				if adaptive.FromContext(ctx) != lim {
					return nil, errors.New("the job's context does not carry the worker's limiter")
				}
				return "ok", limitedCall(ctx, up.URL)
			}
			r := newRigWith(t, rigOpts{maxAttempts: 1, retention: time.Hour, limiter: lim}, op)
			e, err := Enqueue[any](t.Context(), r.client, op, nil, EnqueueOptions{})
			if err != nil {
				t.Fatal(err)
			}
			j, err := r.client.Wait(t.Context(), e, 15*time.Second)
			if err != nil || !j.Done() {
				t.Fatalf("job %+v, %v", j, err)
			}
			if strings.Contains(string(j.Body), "does not carry") {
				t.Fatalf("job answered %s", j.Body)
			}
			if got := lim.Limit(); got != tc.wantLimit {
				t.Errorf("limit = %d, want %d", got, tc.wantLimit)
			}
			if lim.InFlight() != 0 {
				t.Errorf("%d slots still held", lim.InFlight())
			}
		})
	}
}

func TestAdaptiveLimitBoundsCallsToPrefect(t *testing.T) {
	t.Parallel()
	var cur, peak atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		cur.Add(-1)
	}))
	defer up.Close()
	lim := adaptive.New(adaptive.Config{Max: 2, Initial: 2})
	op := echoOp("t:bounded", nil)
	op.Work = func(ctx context.Context, _ any, _ Run) (any, error) { return "ok", limitedCall(ctx, up.URL) }
	// The asynq server runs 4 jobs at once; the limit lets 2 of them call.
	r := newRigWith(t, rigOpts{maxAttempts: 1, retention: time.Hour, limiter: lim}, op)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			e, err := Enqueue[any](t.Context(), r.client, op, nil, EnqueueOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			if j, err := r.client.Wait(t.Context(), e, 30*time.Second); err != nil || j.State != StateSucceeded {
				t.Errorf("job %+v, %v", j, err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Errorf("%d calls reached Prefect at once; the limit is 2", p)
	}
}
