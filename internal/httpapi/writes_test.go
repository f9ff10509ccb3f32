package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/worker"
	"github.com/DalgoT4D/prefect-proxy-go/internal/writes"
)

// writesBundle is the api's real handler, a real worker on miniredis, and a
// fake Prefect, wired with test ops that use the contract's names.
type writesBundle struct {
	api http.Handler
	// unchecked is api without the openapi.json check, for the answers
	// only a test can provoke.
	unchecked http.Handler
	prefect   *prefecttest.Server
	mr        *miniredis.Miniredis
	jobs      *jobs.Client
}

const testAdminToken = "admin-tok"

func newWritesBundle(t *testing.T, wait time.Duration) *writesBundle {
	t.Helper()
	return newWritesBundlePolling(t, wait, time.Minute)
}

// newWritesBundlePolling sets the api's fallback poll (the default bundle's
// minute proves that completion arrives by pub/sub).
func newWritesBundlePolling(t *testing.T, wait, poll time.Duration) *writesBundle {
	t.Helper()
	pf := prefecttest.New(t)
	mr := miniredis.RunT(t)
	opt, err := jobs.RedisOpt("redis://" + mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg := config.Config{
		JobWaitTimeout: wait, JobRetention: time.Hour, JobMaxAttempts: 5, WorkerConcurrency: 4,
		JobEncryptionKey: bytes.Repeat([]byte{1}, 32), AdminToken: testAdminToken,
	}
	ops := writes.New(proxy.New(pf.Client(), log))
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { _ = rdb.Close() })
	w, err := worker.New(worker.Deps{Config: cfg, Log: log, Redis: rdb, Registry: prometheus.NewRegistry(),
		Ops: ops.Registry(), ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	jc, err := jobs.NewClient(context.Background(), rdb, jobs.ClientConfig{Key: cfg.JobEncryptionKey, Ops: ops.Registry(),
		MaxAttempts: cfg.JobMaxAttempts, Retention: cfg.JobRetention, PollInterval: poll, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jc.Close)
	api := New(Deps{Config: cfg, Log: log, Metrics: NewMetrics(prometheus.NewRegistry()), Jobs: jc, Ops: ops,
		Monitoring: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, "asynqmon at "+r.URL.Path)
		})})
	return &writesBundle{api: specChecked(t, api), unchecked: api, prefect: pf, mr: mr, jobs: jc}
}

type wrResp struct {
	status int
	header http.Header
	body   string
}

func (b *writesBundle) do(t *testing.T, method, path, body string, header ...string) wrResp {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	b.api.ServeHTTP(rec, req)
	return wrResp{rec.Code, rec.Header(), rec.Body.String()}
}

func wrJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %s", s)
	}
	return m
}

const depID = "0b6a1d2e-0000-4000-8000-000000000001"

func createFlowRunOK(pf *prefecttest.Server, calls *atomic.Int32) {
	pf.Handle("POST /deployments/{id}/create_flow_run", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		prefecttest.Write(w, 201, map[string]any{"id": "fr-1", "name": "brave-otter"})
	})
}

func TestWriteRouteAnswersTheJobsResult(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	var calls atomic.Int32
	createFlowRunOK(b.prefect, &calls)
	for _, path := range []string{"/proxy/deployments/" + depID + "/flow_run", "/proxy/deployments/" + depID + "/flow_run/"} {
		r := b.do(t, "POST", path, `{"config": {"org_slug": "o"}}`)
		if r.status != 200 || r.body != `{"flow_run_id":"fr-1","name":"brave-otter"}` {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		if r.header.Get("Job-Id") == "" || r.header.Get("Preference-Applied") != "" {
			t.Fatalf("headers %v", r.header)
		}
	}
	call := b.prefect.CallsTo("POST", "/deployments/"+depID+"/create_flow_run")[0].JSON(t)
	if call["idempotency_key"] == "" || call["parameters"].(map[string]any)["config"] == nil {
		t.Fatalf("prefect got %v", call)
	}
}

func TestWriteRouteBadInputIs422AndQueuesNothing(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", `[1,2]`)
	if r.status != 422 || !strings.Contains(r.body, "valid dictionary") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, k := range b.mr.Keys() {
		if strings.Contains(k, ":t:") {
			t.Fatalf("a job was queued: %s", k)
		}
	}
}

func TestRespondAsyncGives202AndTheJobAPIShowsTheResult(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	var calls atomic.Int32
	createFlowRunOK(b.prefect, &calls)
	r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", ``, "Prefer", "respond-async")
	if r.status != 202 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	body := wrJSON(t, r.body)
	id, _ := body["job_id"].(string)
	if id == "" || body["status_url"] != "/jobs/"+id || r.header.Get("Location") != "/jobs/"+id ||
		r.header.Get("Preference-Applied") != "respond-async" || !strings.Contains(r.header.Get("Vary"), "Prefer") {
		t.Fatalf("202 %v %s", r.header, r.body)
	}
	g := b.do(t, "GET", "/jobs/"+id+"?wait=5s", "")
	if g.status != 200 {
		t.Fatalf("GET job: %d %s", g.status, g.body)
	}
	v := wrJSON(t, g.body)
	if v["id"] != id || v["type"] != "flowrun:create" || v["state"] != "succeeded" || v["attempts"] != 1.0 ||
		v["error"] != nil || v["created_at"] == nil || v["completed_at"] == nil {
		t.Fatalf("job view %s", g.body)
	}
	if res, _ := v["result"].(map[string]any); res["flow_run_id"] != "fr-1" {
		t.Fatalf("result %s", g.body)
	}
}

func TestRespondAsyncWithWaitAnswersInlineWhenDone(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	var calls atomic.Int32
	createFlowRunOK(b.prefect, &calls)
	r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", ``, "Prefer", "respond-async, wait=5")
	if r.status != 200 || r.header.Get("Preference-Applied") != "wait=5" {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
}

func TestWaitRunsOutGives504WithJobIDAndTheJobGoesOn(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	release := make(chan struct{})
	b.prefect.Handle("POST /deployments/{id}/create_flow_run", func(w http.ResponseWriter, r *http.Request) {
		<-release
		prefecttest.Write(w, 201, map[string]any{"id": "fr-slow", "name": "slow-run"})
	})
	start := time.Now()
	r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", `{}`, "Prefer", "wait=1")
	close(release)
	if r.status != 504 || time.Since(start) > 5*time.Second {
		t.Fatalf("%d %s after %s", r.status, r.body, time.Since(start))
	}
	body := wrJSON(t, r.body)
	id, _ := body["job_id"].(string)
	if id == "" || !strings.Contains(body["detail"].(string), "did not finish") ||
		r.header.Get("Preference-Applied") != "wait=1" || r.header.Get("Location") != "/jobs/"+id {
		t.Fatalf("504 %v %s", r.header, r.body)
	}
	g := b.do(t, "GET", "/jobs/"+id+"?wait=10", "")
	if v := wrJSON(t, g.body); v["state"] != "succeeded" {
		t.Fatalf("job after release: %s", g.body)
	}
}

func TestConfiguredWaitTimeoutGives504(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 300*time.Millisecond)
	release := make(chan struct{})
	defer close(release)
	b.prefect.Handle("POST /deployments/{id}/create_flow_run", func(w http.ResponseWriter, r *http.Request) {
		<-release
	})
	// A wait above JOB_WAIT_TIMEOUT is capped, and so not echoed.
	r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", `{}`, "Prefer", "wait=100")
	if r.status != 504 || r.header.Get("Preference-Applied") != "" || wrJSON(t, r.body)["job_id"] == nil {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
}

func TestIdempotencyKeyReturnsTheSameJob(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	var calls atomic.Int32
	createFlowRunOK(b.prefect, &calls)
	path := "/proxy/deployments/" + depID + "/flow_run"
	r1 := b.do(t, "POST", path, `{"a": 1}`, "Idempotency-Key", "run-42")
	r2 := b.do(t, "POST", path, `{"a": 1}`, "Idempotency-Key", "run-42")
	if r1.status != 200 || r2.status != 200 || r1.body != r2.body || calls.Load() != 1 ||
		r1.header.Get("Job-Id") != r2.header.Get("Job-Id") {
		t.Fatalf("repeat: %d %s / %d %s, prefect called %d", r1.status, r1.body, r2.status, r2.body, calls.Load())
	}
	// An async repeat of a finished job gets the answer too.
	r3 := b.do(t, "POST", path, `{"a": 1}`, "Idempotency-Key", "run-42", "Prefer", "respond-async")
	if r3.status != 200 || r3.body != r1.body {
		t.Fatalf("async repeat: %d %s", r3.status, r3.body)
	}
	r4 := b.do(t, "POST", path, `{"a": 2}`, "Idempotency-Key", "run-42")
	if r4.status != 422 || !strings.Contains(r4.body, "different request") || calls.Load() != 1 {
		t.Fatalf("different body: %d %s", r4.status, r4.body)
	}
	r5 := b.do(t, "POST", path, `{}`, "Idempotency-Key", strings.Repeat("x", 300))
	if r5.status != 422 {
		t.Fatalf("long key: %d %s", r5.status, r5.body)
	}
}

func TestRetryOn503ThenSuccessInsideTheWait(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	var calls atomic.Int32
	// The first attempt's calls all find Prefect locked (the client's own
	// three tries); the job's second attempt gets through.
	b.prefect.Handle("POST /deployments/{id}/create_flow_run", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			prefecttest.Write(w, 503, map[string]any{"exception_message": "database is locked"})
			return
		}
		prefecttest.Write(w, 201, map[string]any{"id": "fr-2", "name": "second-try"})
	})
	r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", `{}`)
	if r.status != 200 || r.body != `{"flow_run_id":"fr-2","name":"second-try"}` || calls.Load() != 4 {
		t.Fatalf("%d %s calls %d", r.status, r.body, calls.Load())
	}
	g := wrJSON(t, b.do(t, "GET", "/jobs/"+r.header.Get("Job-Id"), "").body)
	if g["attempts"] != 2.0 || g["state"] != "succeeded" {
		t.Fatalf("job %v", g)
	}
	// Both attempts carried the same idempotency key.
	cs := b.prefect.CallsTo("POST", "/deployments/"+depID+"/create_flow_run")
	if cs[0].JSON(t)["idempotency_key"] != cs[3].JSON(t)["idempotency_key"] {
		t.Fatal("idempotency_key changed between attempts")
	}
}

func TestPrefect4xxFailsAtOnceAndIsReplayed(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	b.prefect.JSON("POST /deployments/{id}/create_flow_run", 404, map[string]any{"detail": "Deployment not found"})
	r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", `{}`)
	if r.status != 400 || r.body != `{"detail":"failed to create flow_run for deployment"}` {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if n := len(b.prefect.CallsTo("POST", "/deployments/"+depID+"/create_flow_run")); n != 1 {
		t.Fatalf("prefect called %d times; a 4xx must not be retried", n)
	}
	g := wrJSON(t, b.do(t, "GET", "/jobs/"+r.header.Get("Job-Id"), "").body)
	e, _ := g["error"].(map[string]any)
	if g["state"] != "failed" || g["attempts"] != 1.0 || e["status"] != 400.0 ||
		e["detail"] != "failed to create flow_run for deployment" || g["result"] != nil {
		t.Fatalf("job %v", g)
	}
}

func TestJobAPIErrors(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"unknown job is 404", "/jobs/00000000-0000-4000-8000-000000000000", 404},
		{"non-uuid job is 404", "/jobs/nope", 404},
		{"bad wait is 422", "/jobs/00000000-0000-4000-8000-000000000000?wait=soon", 422},
		{"negative wait is 422", "/jobs/00000000-0000-4000-8000-000000000000?wait=-1s", 422},
	} {
		if r := b.do(t, "GET", tc.path, ""); r.status != tc.status || !strings.Contains(r.body, "detail") {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
}

func TestMonitoringIsAdminOnlyAndKeepsItsSlash(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	if r := b.do(t, "GET", "/monitoring/", ""); r.status != 401 {
		t.Fatalf("no token: %d %s", r.status, r.body)
	}
	for path, want := range map[string]string{
		"/monitoring/":                 "asynqmon at /monitoring/",
		"/monitoring":                  "asynqmon at /monitoring",
		"/monitoring/queues/critical/": "asynqmon at /monitoring/queues/critical/",
		"/monitoring/api/queues":       "asynqmon at /monitoring/api/queues",
	} {
		r := b.do(t, "GET", path, "", "Authorization", "Bearer "+testAdminToken)
		if r.status != 200 || r.body != want {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
}

func TestPreferParsing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    []string
		async bool
		wait  time.Duration
		set   bool
	}{
		{nil, false, 0, false},
		{[]string{"respond-async"}, true, 0, false},
		{[]string{"Respond-Async; foo=bar, wait=7"}, true, 7 * time.Second, true},
		{[]string{"wait=3", "respond-async"}, true, 3 * time.Second, true},
		{[]string{`wait="4"`}, false, 4 * time.Second, true},
		{[]string{"wait=soon, return=minimal"}, false, 0, false},
		{[]string{"wait=-2"}, false, 0, false},
		{[]string{"wait="}, false, 0, false},
		{[]string{"wait=99999999999999999999"}, false, (1 << 30) * time.Second, true},
		{[]string{"wait=10000000000"}, false, (1 << 30) * time.Second, true},
	} {
		p := parsePrefer(tc.in)
		if p.async != tc.async || p.wait != tc.wait || p.waitSet != tc.set {
			t.Errorf("%q: got %+v", tc.in, p)
		}
	}
}

// Redis failing for the whole wait: a 503 with a detail that still names the
// job (it is queued and goes on), never a bare 500 or a hang.
func TestRedisDownDuringTheWaitGives503WithJobID(t *testing.T) {
	t.Parallel()
	b := newWritesBundlePolling(t, 10*time.Second, 50*time.Millisecond)
	called, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	b.prefect.Handle("POST /deployments/{id}/create_flow_run", func(w http.ResponseWriter, r *http.Request) {
		if once.CompareAndSwap(false, true) {
			close(called)
		}
		<-release
		prefecttest.Write(w, 201, map[string]any{"id": "fr-1", "name": "brave-otter"})
	})
	got := make(chan wrResp, 1)
	go func() { got <- b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", `{}`, "Prefer", "wait=1") }()
	<-called
	b.mr.SetError("LOADING Redis is loading the dataset in memory")
	var r wrResp
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	b.mr.SetError("")
	close(release)
	m := wrJSON(t, r.body)
	if r.status != 503 || m["job_id"] == nil || m["detail"] == nil || r.header.Get("Location") != "/jobs/"+m["job_id"].(string) {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
}

func TestParseWait(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"": 0, "10s": 10 * time.Second, "10": 10 * time.Second, "0.5": 500 * time.Millisecond,
		"5m": maxJobWait, "1e10": maxJobWait, "Inf": maxJobWait, "99999999999999999999": maxJobWait,
	} {
		if got, err := parseWait(in); err != nil || got != want {
			t.Errorf("parseWait(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "-1s", "soon", "NaN", "-Inf"} {
		if _, err := parseWait(in); apperr.CodeOf(err) != apperr.Invalid {
			t.Errorf("parseWait(%q): %v, want a 422", in, err)
		}
	}
}

// Concurrent identical requests with one Idempotency-Key: one job, one
// Prefect call, the same answer for all.
func TestConcurrentIdempotentRequestsShareOneJob(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	var calls atomic.Int32
	createFlowRunOK(b.prefect, &calls)
	path := "/proxy/deployments/" + depID + "/flow_run"
	const n = 8
	got := make(chan wrResp, n)
	for range n {
		go func() { got <- b.do(t, "POST", path, `{"a": 1}`, "Idempotency-Key", "same-time") }()
	}
	var first wrResp
	for i := range n {
		r := <-got
		if i == 0 {
			first = r
		}
		if r.status != 200 || r.body != first.body || r.header.Get("Job-Id") != first.header.Get("Job-Id") {
			t.Errorf("answer %d: %d %s (first %d %s)", i, r.status, r.body, first.status, first.body)
		}
	}
	if c := calls.Load(); c != 1 {
		t.Fatalf("Prefect called %d times", c)
	}
}

func TestDeeplyNestedBodyIs422AndQueuesNothing(t *testing.T) {
	t.Parallel()
	b := newWritesBundle(t, 10*time.Second)
	deep := `{"config": ` + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + `}`
	// Strings holding brackets do not count as nesting.
	shallowText := `{"config": {"org_slug": "` + strings.Repeat(`[{\"`, 500) + `"}}`
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/proxy/deployments/" + depID + "/flow_run", deep, 422},
		{"POST", "/proxy/v1/deployments", deep, 422},
		{"PUT", "/proxy/blocks/secret", deep, 422},
		{"POST", "/proxy/flow_runs/" + depID + "/set_state", deep, 422},
	} {
		r := b.do(t, tc.method, tc.path, tc.body)
		if r.status != tc.want {
			t.Fatalf("%s %s: %d %s", tc.method, tc.path, r.status, r.body)
		}
		var got struct {
			Detail []struct {
				Type string `json:"type"`
				Loc  []any  `json:"loc"`
			} `json:"detail"`
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || len(got.Detail) != 1 ||
			got.Detail[0].Type != "json_invalid" || got.Detail[0].Loc[0] != "body" {
			t.Fatalf("%s %s: detail %s", tc.method, tc.path, r.body)
		}
	}
	for _, k := range b.mr.Keys() {
		if strings.Contains(k, ":t:") {
			t.Fatalf("a job was queued: %s", k)
		}
	}
	var calls atomic.Int32
	createFlowRunOK(b.prefect, &calls)
	if r := b.do(t, "POST", "/proxy/deployments/"+depID+"/flow_run", shallowText); r.status != 200 {
		t.Fatalf("brackets inside a string: %d %s", r.status, r.body)
	}
}
