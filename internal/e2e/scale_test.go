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
	"net/http"
	"sort"
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
		"JOB_WAIT_TIMEOUT":                  "20s",
		"LOG_LEVEL":                         "info",
	}
}

// loadClient bounds every request: a request that neither answers nor fails
// within this is a hang, which the tests count.
var loadClient = &http.Client{Timeout: 40 * time.Second}

// outcome is one request of the load.
type outcome struct {
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
				marker := uuid.NewString()
				l.record(do(kind, marker, "POST", next()+"/proxy/deployments/"+depID+"/flow_run",
					map[string]any{"req": marker}, "Prefer", hdr))
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
				run := uuid.NewString()
				l.record(do("notify", run, "POST", next()+"/webhooks/v1/notification/", map[string]any{
					"flow_run_id": run, "flow_run_name": "load-" + run[:8], "state_name": "Completed",
					"state_type": "COMPLETED", "state_timestamp": time.Now().UTC().Format(time.RFC3339Nano),
					"event_id": uuid.NewString(),
				}, "X-Notification-Key", inboundKey))
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
func verdict(t *testing.T, outs []outcome) map[string]map[int]int {
	t.Helper()
	counts := map[string]map[int]int{}
	for _, o := range outs {
		if counts[o.kind] == nil {
			counts[o.kind] = map[int]int{}
		}
		counts[o.kind][o.status]++
		switch {
		case o.status == 0:
			t.Errorf("%s %s: no answer after %s: %s", o.kind, o.marker, o.end.Sub(o.start), o.err)
		case o.acked():
		case o.status == http.StatusServiceUnavailable:
			var d struct{ Detail string }
			if json.Unmarshal(o.body, &d) != nil || d.Detail == "" {
				t.Errorf("%s: 503 without a JSON detail: %s", o.kind, o.body)
			}
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
		if o.kind == "notify" || !o.acked() {
			continue
		}
		var b struct {
			FlowRunID string `json:"flow_run_id"`
			JobID     string `json:"job_id"`
		}
		if err := json.Unmarshal(o.body, &b); err != nil {
			t.Fatalf("%s answer %d: %s", o.kind, o.status, o.body)
		}
		if o.status == 202 {
			deadline := time.Now().Add(90 * time.Second)
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
func exactlyOnce(t *testing.T, p *testenv.PrefectServer, dj *testenv.Django, depID string, bases []string, outs []outcome) (lostWrites, lostNotes int) {
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
	for _, r := range dj.Accepted() {
		got[r.FlowRunID]++
	}
	for m := range want {
		switch got[m] {
		case 1:
		case 0:
			lostNotes++
			t.Errorf("acknowledged notification for run %s never reached Django", m)
		default:
			t.Errorf("notification for run %s reached Django %d times", m, got[m])
		}
	}
	return lostWrites, lostNotes
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
	var apis, procs []*testenv.Proc
	var bases []string
	for i := 0; i < 2; i++ {
		a := testenv.StartAPI(t, env)
		apis = append(apis, a)
		bases = append(bases, a.URL)
	}
	procs = append(procs, apis...)
	for i := 0; i < 2; i++ {
		procs = append(procs, testenv.StartWorker(t, env))
	}
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
	// Keep the load on until the processes have shown they write to the
	// new primary for a while.
	time.Sleep(6 * time.Second)
	stop()

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
	lostW, lostN := exactlyOnce(t, p, dj, dep.ID, bases, outs)
	t.Logf("failover %s → %s: Sentinel promoted after %s; first acknowledgement of a request sent after the kill %s after it",
		old, now, promoted.Sub(killed).Round(time.Millisecond), firstAckAfter.Sub(killed).Round(time.Millisecond))
	t.Logf("requests: %d (%s); not acknowledged during the switch: %d; slowest answer %s; acknowledged after the switch: %d",
		len(outs), summary(counts), failedDuring, slowest.Round(time.Millisecond), ackedAfter)
	t.Logf("acknowledged-and-lost: writes %d, notifications %d", lostW, lostN)
}
