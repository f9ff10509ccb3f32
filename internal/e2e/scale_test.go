package e2e

// Beyond one machine: several api and worker processes on one Redis, a
// Redis primary failing over under load (Sentinel), and a load balancer in
// front of the apis. What an acknowledgement (200/202) promises is checked
// where it lands: flow runs in the real Prefect, notifications at the test
// Django.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// scaleEnv is the environment of every api and worker of a scale test.
func scaleEnv(p *testenv.PrefectServer, dj *testenv.Django, redisURL, inboundKey string) map[string]string {
	return map[string]string{
		"REDIS_URL":                         redisURL,
		"JOB_ENCRYPTION_KEY":                testJobKey,
		"PREFECT_API_URL":                   p.URL,
		"RELAY_INBOUND_KEY":                 inboundKey,
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": relayDjangoKey,
		"DJANGO_WEBHOOK_URL":                dj.URL,
		"RELAY_RETRY_SCHEDULE":              "300ms",
		"RELAY_RECONCILE_INTERVAL":          "0",
		"RELAY_EVENTS":                      "off",
		"JOB_WAIT_TIMEOUT":                  "20s",
		"LOG_LEVEL":                         "info",
	}
}

// loadClient bounds every request: a request that neither answers nor fails
// within this is a hang, which the tests count.
var loadClient = &http.Client{Timeout: 40 * time.Second}

// outcome is one request of the load.
type outcome struct {
	base   string // the api (or balancer) it went to
	kind   string // "sync", "async", "notify"
	marker string // the write's parameter / the notification's flow run id
	start  time.Time
	end    time.Time
	status int // 0: transport error (a hang if it timed out)
	err    string
	body   []byte
}

func (o outcome) acked() bool { return o.status == 200 || o.status == 202 }

// load sends a steady, bounded stream of writes (a flow-run creation per
// request, sync and Prefer: respond-async alternately) and relay
// notifications, round-robin over the base URLs, until stop is closed.
type load struct {
	mu   sync.Mutex
	outs []outcome
	seq  atomic.Int64
}

func (l *load) record(o outcome) {
	l.mu.Lock()
	l.outs = append(l.outs, o)
	l.mu.Unlock()
}

func (l *load) outcomes() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]outcome(nil), l.outs...)
}

// run starts writers and notifiers goroutines and returns a function that
// stops them and waits.
func (l *load) run(bases []string, depID, inboundKey string, writers, notifiers int, pause time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	next := func() string { return bases[int(l.seq.Add(1))%len(bases)] }
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				kind, hdr := "sync", ""
				if (i+w)%2 == 1 {
					kind, hdr = "async", "respond-async"
				}
				marker, base := uuid.NewString(), next()
				o := do(kind, marker, "POST", base+"/proxy/deployments/"+depID+"/flow_run",
					map[string]any{"req": marker}, "Prefer", hdr)
				o.base = base
				l.record(o)
				time.Sleep(pause)
			}
		}(w)
	}
	for n := 0; n < notifiers; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				run, base := uuid.NewString(), next()
				o := do("notify", run, "POST", base+"/webhooks/v1/notification/", map[string]any{
					"flow_run_id": run, "flow_run_name": "load-" + run[:8], "state_name": "Completed",
					"state_type": "COMPLETED", "state_timestamp": time.Now().UTC().Format(time.RFC3339Nano),
					"event_id": uuid.NewString(),
				}, "X-Notification-Key", inboundKey)
				o.base = base
				l.record(o)
				time.Sleep(pause)
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

// do makes one request and never fails the test: the outcome says it all.
func do(kind, marker, method, url string, body any, headers ...string) outcome {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, url, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	o := outcome{kind: kind, marker: marker, start: time.Now()}
	resp, err := loadClient.Do(req)
	if err != nil {
		o.end, o.err = time.Now(), err.Error()
		return o
	}
	defer resp.Body.Close()
	o.body, _ = io.ReadAll(resp.Body)
	o.end, o.status = time.Now(), resp.StatusCode
	return o
}

// verdict checks what the load saw and returns a one-line summary per kind.
// Every answer is 200/202 or a 503 with a JSON detail; no request failed at
// the transport or hung.
func verdict(t *testing.T, outs []outcome, alsoOK ...int) map[string]map[int]int {
	t.Helper()
	counts := map[string]map[int]int{}
	for _, o := range outs {
		if counts[o.kind] == nil {
			counts[o.kind] = map[int]int{}
		}
		counts[o.kind][o.status]++
		switch {
		case o.status == 0 && (!slices.Contains(alsoOK, 0) || strings.Contains(o.err, "Timeout")):
			t.Errorf("%s %s: no answer after %s: %s", o.kind, o.marker, o.end.Sub(o.start), o.err)
		case o.status == 0:
			// The connection closed without an answer (HAProxy does so for
			// a request whose api died holding it): not acknowledged, not
			// a hang.
		case o.acked():
		case o.status == http.StatusServiceUnavailable || (o.status == http.StatusGatewayTimeout && slices.Contains(alsoOK, o.status)):
			var d struct{ Detail string }
			if json.Unmarshal(o.body, &d) != nil || d.Detail == "" {
				t.Errorf("%s: %d without a JSON detail: %s", o.kind, o.status, o.body)
			}
		case slices.Contains(alsoOK, o.status):
		default:
			t.Errorf("%s %s: unexpected %d: %s", o.kind, o.marker, o.status, o.body)
		}
	}
	return counts
}

// settle resolves every acknowledged write to its flow run: a 200 carries
// it; a 202's job is waited on (through any api) until it is done.
func settle(t *testing.T, bases []string, outs []outcome) map[string]string {
	t.Helper()
	runs := map[string]string{} // marker → flow run id
	for i, o := range outs {
		// A 504 names a job that goes on: it must land too.
		if o.kind == "notify" || !(o.acked() || o.status == http.StatusGatewayTimeout) {
			continue
		}
		var b struct {
			FlowRunID string `json:"flow_run_id"`
			JobID     string `json:"job_id"`
		}
		if err := json.Unmarshal(o.body, &b); err != nil {
			t.Fatalf("%s answer %d: %s", o.kind, o.status, o.body)
		}
		if o.status != 200 {
			deadline := time.Now().Add(120 * time.Second)
			for {
				j := send(t, "GET", bases[i%len(bases)]+"/jobs/"+b.JobID+"?wait=20s", nil)
				if j.Status == 200 {
					m := j.object(t)
					if m["state"] == "succeeded" {
						res, _ := m["result"].(map[string]any)
						b.FlowRunID, _ = res["flow_run_id"].(string)
						break
					}
					if m["state"] == "failed" {
						t.Fatalf("acknowledged job %s failed: %s", b.JobID, j.Body)
					}
				} else if j.Status != 503 {
					t.Fatalf("acknowledged job %s: GET /jobs answers %d %s (lost?)", b.JobID, j.Status, j.Body)
				}
				if time.Now().After(deadline) {
					t.Fatalf("acknowledged job %s never finished: %s", b.JobID, j.Body)
				}
			}
		}
		if b.FlowRunID == "" {
			t.Fatalf("acknowledged %s write without a flow run: %s", o.kind, o.body)
		}
		runs[o.marker] = b.FlowRunID
	}
	return runs
}

// runsByMarker lists a deployment's flow runs in Prefect grouped by the
// "req" parameter the load gave each request.
func runsByMarker(t *testing.T, p *testenv.PrefectServer, depID string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for offset := 0; ; offset += 200 {
		var page []struct {
			ID         string
			Parameters map[string]any
		}
		p.Do(t, "POST", "/flow_runs/filter", map[string]any{
			"flow_runs": map[string]any{"deployment_id": map[string]any{"any_": []string{depID}}},
			"limit":     200, "offset": offset, "sort": "ID_DESC",
		}, &page)
		for _, r := range page {
			m, _ := r.Parameters["req"].(string)
			out[m] = append(out[m], r.ID)
		}
		if len(page) < 200 {
			return out
		}
	}
}

// exactlyOnce checks each acknowledged write made exactly one flow run (the
// one its answer named) and no request made two; and each acknowledged
// notification reached Django exactly once. It returns how many
// acknowledged writes and notifications were lost.
//
// With resent, a notification may reach Django twice with the same
// Webhook-Id (a worker killed between Django's answer and recording it: the
// documented at-least-once case); the count is returned.
func exactlyOnce(t *testing.T, p *testenv.PrefectServer, dj *testenv.Django, depID string, bases []string, outs []outcome, resent bool) (lostWrites, lostNotes, dupNotes int) {
	t.Helper()
	acked := settle(t, bases, outs)
	inPrefect := runsByMarker(t, p, depID)
	for marker, ids := range inPrefect {
		if len(ids) > 1 {
			t.Errorf("request %s made %d flow runs: %v", marker, len(ids), ids)
		}
	}
	for marker, id := range acked {
		ids := inPrefect[marker]
		if len(ids) == 0 {
			lostWrites++
			t.Errorf("acknowledged write %s (flow run %s) is not in Prefect", marker, id)
		} else if ids[0] != id {
			t.Errorf("acknowledged write %s answered flow run %s, Prefect has %v", marker, id, ids)
		}
	}
	want := map[string]bool{}
	for _, o := range outs {
		if o.kind == "notify" && o.status == 202 {
			want[o.marker] = true
		}
	}
	dj.WaitFor(90*time.Second, func([]testenv.DjangoRequest) bool {
		got := map[string]bool{}
		for _, r := range dj.Accepted() {
			got[r.FlowRunID] = true
		}
		for m := range want {
			if !got[m] {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // room for a duplicate to show up
	got := map[string]int{}
	ids := map[string]map[string]bool{}
	for _, r := range dj.Accepted() {
		got[r.FlowRunID]++
		if ids[r.FlowRunID] == nil {
			ids[r.FlowRunID] = map[string]bool{}
		}
		ids[r.FlowRunID][r.Header.Get("Webhook-Id")] = true
	}
	for m := range want {
		switch {
		case got[m] == 1:
		case got[m] == 0:
			lostNotes++
			t.Errorf("acknowledged notification for run %s never reached Django", m)
		case resent && len(ids[m]) == 1:
			dupNotes++
		default:
			t.Errorf("notification for run %s reached Django %d times (Webhook-Ids %v)", m, got[m], ids[m])
		}
	}
	return lostWrites, lostNotes, dupNotes
}

func summary(counts map[string]map[int]int) string {
	var parts []string
	for _, kind := range []string{"sync", "async", "notify"} {
		var st []string
		for s, n := range counts[kind] {
			st = append(st, fmt.Sprintf("%d×%d", n, s))
		}
		sort.Strings(st)
		parts = append(parts, kind+" "+strings.Join(st, " "))
	}
	return strings.Join(parts, "; ")
}

// TestSentinelFailoverUnderLoad: two apis and two workers on
// redis-sentinel://, a steady stream of writes and notifications, and the
// Redis primary SIGKILLed mid-stream. The processes follow the promoted
// replica without a restart; while the primary is gone clients get 503 with
// a JSON detail (or a slower answer), never a hang; every acknowledged write
// and notification lands exactly once.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: starts Sentinel and a Prefect server")
	}
	p := testenv.Prefect(t)
	dj := testenv.NewDjango(t, relayDjangoKey)
	ss := testenv.Sentinel(t)
	inKey := testenv.Unique("inbound")
	env := scaleEnv(p, dj, ss.URL, inKey)
	var apis, workers, procs []*testenv.Proc
	var bases []string
	for i := 0; i < 2; i++ {
		a := testenv.StartAPI(t, env)
		apis = append(apis, a)
		bases = append(bases, a.URL)
	}
	for i := 0; i < 2; i++ {
		workers = append(workers, testenv.StartWorker(t, env))
	}
	procs = append(append(procs, apis...), workers...)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	old, err := ss.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}

	var l load
	stop := l.run(bases, dep.ID, inKey, 3, 2, 150*time.Millisecond)
	time.Sleep(4 * time.Second)
	killed := time.Now()
	ss.Primary.Proc().Kill() // SIGKILL, as a crashed host
	now, err := ss.WaitFailover(old, 30*time.Second)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	promoted := time.Now()
	doneAtSwitch := make([]float64, len(workers))
	for i, w := range workers {
		doneAtSwitch[i] = workDone(t, w)
	}
	// Keep the load on until the processes have shown they write to the
	// new primary for a while.
	time.Sleep(6 * time.Second)
	stop()
	// Every process serves from the new primary, without a restart: each
	// api acknowledged requests sent after the promotion, and each worker
	// finished jobs or deliveries after it.
	for _, base := range bases {
		n := 0
		for _, o := range l.outcomes() {
			if o.base == base && o.start.After(promoted) && o.acked() {
				n++
			}
		}
		if n == 0 {
			t.Errorf("api %s acknowledged nothing after the failover", base)
		}
	}
	for i, w := range workers {
		if d := workDone(t, w) - doneAtSwitch[i]; d <= 0 {
			t.Errorf("%s finished no work after the failover", w)
		}
	}

	outs := l.outcomes()
	counts := verdict(t, outs)
	var firstAckAfter time.Time
	failedDuring, slowest := 0, time.Duration(0)
	for _, o := range outs {
		if o.end.After(killed) && !o.acked() {
			failedDuring++
		}
		if o.start.After(killed) && o.acked() && (firstAckAfter.IsZero() || o.end.Before(firstAckAfter)) {
			firstAckAfter = o.end
		}
		if d := o.end.Sub(o.start); d > slowest {
			slowest = d
		}
	}
	ackedAfter := 0
	for _, o := range outs {
		if o.start.After(promoted) && o.acked() {
			ackedAfter++
		}
	}
	if ackedAfter == 0 {
		t.Fatalf("nothing acknowledged after the failover to %s: the processes did not follow the new primary", now)
	}
	for _, pr := range procs {
		select {
		case <-pr.Done():
			t.Errorf("%s exited during the failover: %v", pr, pr.ExitErr())
		default:
		}
	}
	lostW, lostN, _ := exactlyOnce(t, p, dj, dep.ID, bases, outs, false)
	t.Logf("failover %s → %s: Sentinel promoted after %s; first acknowledgement of a request sent after the kill %s after it",
		old, now, promoted.Sub(killed).Round(time.Millisecond), firstAckAfter.Sub(killed).Round(time.Millisecond))
	t.Logf("requests: %d (%s); not acknowledged during the switch: %d; slowest answer %s; acknowledged after the switch: %d",
		len(outs), summary(counts), failedDuring, slowest.Round(time.Millisecond), ackedAfter)
	t.Logf("acknowledged-and-lost: writes %d, notifications %d", lostW, lostN)
}

// workDone reads a worker's /metrics: write jobs finished plus
// notifications delivered so far.
func workDone(t *testing.T, w *testenv.Proc) float64 {
	t.Helper()
	r := send(t, "GET", w.URL+"/metrics", nil).expect(t, 200)
	total := 0.0
	for _, line := range strings.Split(string(r.Body), "\n") {
		if (strings.HasPrefix(line, "proxy_jobs_processed_total{") && strings.Contains(line, `outcome="succeeded"`)) ||
			(strings.HasPrefix(line, "relay_deliveries_total{") && strings.Contains(line, `result="delivered"`)) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

// scanRecorder stands between one worker and Prefect and records when that
// worker's reconciler scanned (a flow-run filter on end time).
type scanRecorder struct {
	mu    sync.Mutex
	scans []time.Time
}

func (s *scanRecorder) front(t *testing.T, prefectURL string) string {
	target, _ := url.Parse(strings.TrimSuffix(prefectURL, "/api"))
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/flow_runs/filter") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte("end_time")) {
				s.mu.Lock()
				s.scans = append(s.scans, time.Now())
				s.mu.Unlock()
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/api"
}

func (s *scanRecorder) count(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.scans {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// notification is the relay-setup template body for one state of one run.
func notification(run, state, typ string, at time.Time) map[string]any {
	return map[string]any{"flow_run_id": run, "flow_run_name": "order-" + run[:8], "state_name": state,
		"state_type": typ, "state_timestamp": at.UTC().Format(time.RFC3339Nano), "event_id": uuid.NewString()}
}

// TestManyReplicasBehindLoadBalancer: three apis behind a real HAProxy and
// three workers on one Redis. Idempotency keys, job waits, the relay's
// per-run order and its single reconciler hold across processes; an api and
// a worker SIGKILLed mid-run lose nothing.
func TestManyReplicasBehindLoadBalancer(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: starts HAProxy and a Prefect server")
	}
	p := testenv.Prefect(t)
	dj := testenv.NewDjango(t, relayDjangoKey)
	inKey := testenv.Unique("inbound")
	env := scaleEnv(p, dj, testenv.Redis(t), inKey)
	const interval = time.Second
	env["RELAY_RECONCILE_INTERVAL"] = interval.String()
	var apis, workers []*testenv.Proc
	var bases []string
	for i := 0; i < 3; i++ {
		a := testenv.StartAPI(t, env)
		apis = append(apis, a)
		bases = append(bases, a.URL)
	}
	recs := make([]*scanRecorder, 3)
	for i := range recs {
		recs[i] = &scanRecorder{}
		we := maps.Clone(env)
		we["PREFECT_API_URL"] = recs[i].front(t, p.URL)
		workers = append(workers, testenv.StartWorker(t, we))
	}
	scanFrom := time.Now()
	lb := testenv.HAProxy(t, bases)

	t.Run("idempotency key across apis", func(t *testing.T) {
		dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
		key := testenv.Unique("idem")
		path := "/proxy/deployments/" + dep.ID + "/flow_run"
		first := send(t, "POST", bases[0]+path, map[string]any{"x": 1}, "Idempotency-Key", key).expect(t, 200)
		for _, base := range []string{bases[1], bases[2], lb.URL} {
			again := send(t, "POST", base+path, map[string]any{"x": 1}, "Idempotency-Key", key).expect(t, 200)
			if string(again.Body) != string(first.Body) {
				t.Errorf("%s answered %s, the first api %s", base, again.Body, first.Body)
			}
		}
		send(t, "POST", bases[2]+path, map[string]any{"x": 2}, "Idempotency-Key", key).expect(t, 422)
		if n := len(flowRunsOf(t, p, dep.ID)); n != 1 {
			t.Errorf("%d flow runs in Prefect, want 1", n)
		}
	})

	t.Run("a job queued through one api is waited on through another", func(t *testing.T) {
		dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
		r := send(t, "POST", bases[0]+"/proxy/deployments/"+dep.ID+"/flow_run", map[string]any{}, "Prefer", "respond-async").
			expect(t, 202)
		id := str(t, r.object(t), "job_id")
		j := send(t, "GET", bases[1]+"/jobs/"+id+"?wait=20s", nil).expect(t, 200).object(t)
		res, _ := j["result"].(map[string]any)
		if j["state"] != "succeeded" || res["flow_run_id"] == nil {
			t.Fatalf("job through the second api = %v", j)
		}
		if k := send(t, "GET", bases[2]+"/jobs/"+id, nil).expect(t, 200).object(t); asJSON(k["result"]) != asJSON(res) {
			t.Errorf("third api sees %v", k)
		}
		if fr := p.GetFlowRun(t, res["flow_run_id"].(string)); fr["deployment_id"] != dep.ID {
			t.Errorf("flow run = %v", fr)
		}
	})

	t.Run("per-run order across apis", func(t *testing.T) {
		runs := map[string]string{}
		t0 := time.Now().Add(-time.Minute)
		post := func(base, run string, n map[string]any) {
			o := do("notify", run, "POST", base+"/webhooks/v1/notification/", n, "X-Notification-Key", inKey)
			if o.status != 202 {
				t.Errorf("notification through %s: %d %s %s", base, o.status, o.body, o.err)
			}
		}
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			run := uuid.NewString()
			runs[run] = "Completed"
			// Running and Completed of one run through two apis at once, and
			// a copy of Completed through a third: whichever worker takes
			// which, Completed reaches Django once and last.
			for k, n := range []map[string]any{
				notification(run, "Running", "RUNNING", t0.Add(time.Second)),
				notification(run, "Completed", "COMPLETED", t0.Add(2*time.Second)),
				notification(run, "Completed", "COMPLETED", t0.Add(2*time.Second)),
			} {
				wg.Add(1)
				go func() { defer wg.Done(); post(bases[(i+k)%3], run, n) }()
			}
		}
		wg.Wait()
		assertOnce(t, dj, runs)
		// Late arrivals after Completed, through the balancer: an older
		// Running and the Completed again. Neither reaches Django.
		before := len(dj.Accepted())
		for run := range runs {
			post(lb.URL, run, notification(run, "Running", "RUNNING", t0))
			post(lb.URL, run, notification(run, "Completed", "COMPLETED", t0.Add(2*time.Second)))
		}
		time.Sleep(3 * time.Second)
		for _, r := range dj.Accepted()[before:] {
			if _, mine := runs[r.FlowRunID]; mine {
				t.Errorf("run %s: %s reached Django after Completed", r.FlowRunID, r.State)
			}
		}
	})

	t.Run("one reconciler scans per interval", func(t *testing.T) {
		time.Sleep(3 * interval) // let every worker tick a few times
		to := time.Now()
		total, per := 0, []int{}
		for _, r := range recs {
			n := r.count(scanFrom, to)
			per = append(per, n)
			total += n
		}
		// The lease lets one scan through per 0.9 interval, whichever worker
		// wins it; three free-running reconcilers would make three times
		// the scans.
		limit := int(to.Sub(scanFrom)/(interval*9/10)) + 2
		t.Logf("reconciler scans over %s by worker: %v (at most %d allowed)", to.Sub(scanFrom).Round(time.Millisecond), per, limit)
		if total == 0 || total > limit {
			t.Errorf("%d scans in %s with three workers, want 1..%d", total, to.Sub(scanFrom), limit)
		}
	})

	t.Run("an api and a worker SIGKILLed mid-run lose nothing", func(t *testing.T) {
		dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
		var l load
		stop := l.run([]string{lb.URL}, dep.ID, inKey, 3, 1, 150*time.Millisecond)
		time.Sleep(3 * time.Second)
		killed := time.Now()
		apis[0].Kill()
		workers[0].Kill()
		time.Sleep(5 * time.Second)
		stop()
		outs := l.outcomes()
		// HAProxy answers 502 for a request the killed api was serving; a
		// synchronous write whose job was on the killed worker may time out
		// (504, the job goes on and must land).
		counts := verdict(t, outs, 0, http.StatusBadGateway, http.StatusGatewayTimeout)
		lostW, lostN, dup := exactlyOnce(t, p, dj, dep.ID, []string{lb.URL}, outs, true)
		failed := 0
		for _, o := range outs {
			if o.end.After(killed) && !o.acked() {
				failed++
			}
		}
		t.Logf("requests through HAProxy: %d (%s); not acknowledged after the kill: %d", len(outs), summary(counts), failed)
		// The reconciler's lease moves on to the surviving workers.
		time.Sleep(3 * interval)
		if n := recs[1].count(killed, time.Now()) + recs[2].count(killed, time.Now()); n == 0 {
			t.Errorf("no surviving worker ran the reconciler after worker 0 was killed")
		}
		t.Logf("acknowledged-and-lost: writes %d, notifications %d; notifications resent with the same Webhook-Id: %d", lostW, lostN, dup)
	})
}

// TestRedisClusterRefusedAtStart: Redis Cluster is not supported (asynq's
// scripts need one keyspace); the api and the worker refuse it at start with
// one line naming Sentinel, whether the URL says so or the server does.
func TestRedisClusterRefusedAtStart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: starts redis-server")
	}
	cluster, err := testenv.StartRedis("--cluster-enabled", "yes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	cases := []struct{ name, url, want string }{
		{"a cluster-mode server behind redis://", cluster.URL, "the server runs in Redis Cluster mode"},
		{"a redis-cluster:// URL", "redis-cluster://" + cluster.Addr, "Redis Cluster is not supported"},
	}
	for _, tc := range cases {
		for _, start := range []func(map[string]string) (*testenv.Proc, error){testenv.StartAPIProcess, testenv.StartWorkerProcess} {
			env := map[string]string{"REDIS_URL": tc.url, "JOB_ENCRYPTION_KEY": testJobKey, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
			p, err := start(env)
			if err == nil {
				p.Stop(5 * time.Second)
				t.Fatalf("%s: a process started on Redis Cluster", tc.name)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "redis-sentinel://") {
				t.Errorf("%s: want one line saying %q and naming Sentinel, got: %s", tc.name, tc.want, msg)
			}
		}
	}
}
