package e2e

// The notification relay end to end: real Prefect (automations firing the
// webhook block the setup command installs), real Redis, the api and worker
// binaries, and a test Django applying Django's exact key check and regex.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

const relayDjangoKey = "django-notification-key"

var relaySetupBin struct {
	once sync.Once
	path string
	err  error
}

// relaySetup builds cmd/relay-setup once and runs it with args against Prefect.
func relaySetup(t *testing.T, p *testenv.PrefectServer, key string, args ...string) map[string]any {
	t.Helper()
	return relaySetupEnv(t, p, map[string]string{"RELAY_INBOUND_KEY": key}, args...)
}

// relaySetupEnv runs relay-setup against p with env added to the test's.
func relaySetupEnv(t *testing.T, p *testenv.PrefectServer, env map[string]string, args ...string) map[string]any {
	t.Helper()
	relaySetupBin.once.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			relaySetupBin.err = err
			return
		}
		dir, err := os.MkdirTemp("", "relay-setup-")
		if err != nil {
			relaySetupBin.err = err
			return
		}
		testenv.AtShutdown(func() { _ = os.RemoveAll(dir) })
		relaySetupBin.path = filepath.Join(dir, "relay-setup")
		cmd := exec.Command("go", "build", "-o", relaySetupBin.path, "./cmd/relay-setup")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			relaySetupBin.err = err
			t.Logf("%s", out)
		}
	})
	if relaySetupBin.err != nil {
		t.Fatalf("build relay-setup: %v", relaySetupBin.err)
	}
	cmd := exec.Command(relaySetupBin.path, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PREFECT_API_URL="+p.URL)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("relay-setup %v: %v (%s%s)", args, err, out, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("relay-setup output %q: %v", out, err)
	}
	return res
}

// startRelayEnv is startRelay with the environment's defaults overridden
// (a value "" removes the variable).
func startRelayEnv(t *testing.T, p *testenv.PrefectServer, dj *testenv.Django, inboundKey string, over map[string]string) (api *testenv.Proc, redisURL string) {
	t.Helper()
	env := relayEnv(p, dj, inboundKey)
	for k, v := range over {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	api = testenv.StartAPI(t, env)
	testenv.StartWorker(t, env)
	testenv.StartWorker(t, env)
	return api, env["REDIS_URL"]
}

func relayEnv(p *testenv.PrefectServer, dj *testenv.Django, inboundKey string) map[string]string {
	return map[string]string{
		"JOB_ENCRYPTION_KEY":                testJobKey,
		"PREFECT_API_URL":                   p.URL,
		"RELAY_INBOUND_KEY":                 inboundKey,
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": relayDjangoKey,
		"DJANGO_WEBHOOK_URL":                dj.URL,
		"RELAY_RETRY_SCHEDULE":              "300ms",
		"RELAY_RECONCILE_INTERVAL":          "1s",
		// These tests are about the webhook and the reconciler; the event
		// stream (relay_events_test.go) would deliver every run of the shared
		// Prefect on its own.
		"RELAY_EVENTS": "off",
		"LOG_LEVEL":    "info",
	}
}

// startRelay starts an api and two workers (dedupe, ordering and the
// reconciler's lease must hold across processes) on a fresh Redis, relaying to dj.
func startRelay(t *testing.T, p *testenv.PrefectServer, dj *testenv.Django, inboundKey string) *testenv.Proc {
	t.Helper()
	api, _ := startRelayEnv(t, p, dj, inboundKey, map[string]string{"REDIS_URL": testenv.Redis(t)})
	return api
}

// terminalRuns creates one run per terminal state in dep and drives it there
// over Prefect's REST API (through Running, as a worker would).
func terminalRuns(t *testing.T, p *testenv.PrefectServer, depID string) map[string]string {
	t.Helper()
	runs := map[string]string{} // run id → terminal state name
	for typ, name := range map[string]string{"COMPLETED": "Completed", "FAILED": "Failed", "CRASHED": "Crashed", "CANCELLED": "Cancelled"} {
		fr := p.CreateFlowRun(t, depID, nil)
		p.RunTo(t, fr.ID, typ, "")
		runs[fr.ID] = name
	}
	return runs
}

// assertOnce checks Django accepted each run's terminal state exactly once,
// after any Running, and each Running at most once. (A Running that reaches
// the relay after the terminal state — Prefect's actions run concurrently,
// and the reconciler may be first — is dropped as stale, by design.)
func assertOnce(t *testing.T, dj *testenv.Django, runs map[string]string) {
	t.Helper()
	ok := dj.WaitFor(90*time.Second, func([]testenv.DjangoRequest) bool {
		for id, state := range runs {
			if !dj.WaitForState(0, id, state) {
				return false
			}
		}
		return true
	})
	if !ok {
		for id, state := range runs {
			t.Errorf("run %s: want %s, Django accepted %v", id, state, dj.StatesOf(id))
		}
		t.FailNow()
	}
	// Let duplicates (a second webhook, the reconciler's overlapping scans)
	// have their chance to show up.
	time.Sleep(3 * time.Second)
	ids := map[string]bool{}
	for _, r := range dj.Accepted() {
		if _, mine := runs[r.FlowRunID]; !mine {
			continue
		}
		wid := r.Header.Get("Webhook-Id")
		if wid == "" || ids[wid] {
			t.Errorf("run %s %s: Webhook-Id %q missing or repeated", r.FlowRunID, r.State, wid)
		}
		ids[wid] = true
	}
	for id, state := range runs {
		got := dj.StatesOf(id)
		count := map[string]int{}
		for _, s := range got {
			count[s]++
		}
		if count[state] != 1 || count["Running"] > 1 || got[len(got)-1] != state {
			t.Errorf("run %s: Django accepted %v, want %s exactly once and last", id, got, state)
		}
	}
}

func TestRelayWebhookDeliversEachStateOnce(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	t.Logf("Prefect %s at %s", p.Version, p.URL)
	dj := testenv.NewDjango(t, relayDjangoKey)
	inKey := testenv.Unique("inbound")
	// All three sources on (webhook, event stream, reconciler every 1 s):
	// they overlap, and each state still reaches Django once.
	api, _ := startRelayEnv(t, p, dj, inKey, map[string]string{"REDIS_URL": testenv.Redis(t), "RELAY_EVENTS": "on"})
	tag := testenv.Unique("relay-e2e")
	block, automation := testenv.Unique("relay-e2e"), testenv.Unique("relay-e2e")
	args := []string{"-url", api.URL + "/webhooks/v1/notification/", "-block-name", block, "-automation-name", automation, "-tags", tag}

	first := relaySetup(t, p, inKey, args...)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = p.Call(ctx, "DELETE", "/automations/"+first["automation_id"].(string), nil, nil)
		_, _ = p.Call(ctx, "DELETE", "/block_documents/"+first["block_document_id"].(string), nil, nil)
	})
	if first["block"] != "created" || first["automation"] != "created" {
		t.Fatalf("first setup: %v", first)
	}
	if again := relaySetup(t, p, inKey, args...); again["block"] != "unchanged" || again["automation"] != "unchanged" ||
		again["automation_id"] != first["automation_id"] {
		t.Fatalf("second setup changed something: %v", again)
	}
	time.Sleep(1500 * time.Millisecond) // Prefect loads a new automation on commit; a reconcile runs every 5 s

	dep := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{tag}})
	runs := terminalRuns(t, p, dep.ID)
	assertOnce(t, dj, runs)
	for _, r := range dj.Accepted() {
		if _, mine := runs[r.FlowRunID]; mine && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
		}
	}
}

func TestRelayDjangoDownThenBack(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	dj := testenv.NewDjango(t, relayDjangoKey)
	var down atomic.Bool
	down.Store(true)
	dj.RespondWith(func(int) int {
		if down.Load() {
			return 503
		}
		return 0
	})
	inKey := testenv.Unique("inbound")
	api := startRelay(t, p, dj, inKey)
	tag := testenv.Unique("relay-e2e")
	res := relaySetup(t, p, inKey, "-url", api.URL+"/webhooks/v1/notification/",
		"-block-name", testenv.Unique("relay-e2e"), "-automation-name", testenv.Unique("relay-e2e"), "-tags", tag)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = p.Call(ctx, "DELETE", "/automations/"+res["automation_id"].(string), nil, nil)
		_, _ = p.Call(ctx, "DELETE", "/block_documents/"+res["block_document_id"].(string), nil, nil)
	})
	time.Sleep(1500 * time.Millisecond)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{tag}})
	runs := terminalRuns(t, p, dep.ID)
	// Django refuses everything for a while: deliveries are retried, none lost.
	if !dj.WaitFor(30*time.Second, func(reqs []testenv.DjangoRequest) bool { return len(reqs) >= 8 }) {
		t.Fatalf("the relay did not try Django while it was down: %d requests", len(dj.Requests()))
	}
	time.Sleep(2 * time.Second)
	if n := len(dj.Accepted()); n != 0 {
		t.Fatalf("Django accepted %d while down", n)
	}
	down.Store(false)
	assertOnce(t, dj, runs)
}

func TestRelayReconcilerDeliversWithoutWebhook(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	dj := testenv.NewDjango(t, relayDjangoKey)
	startRelay(t, p, dj, testenv.Unique("inbound"))
	// No setup: Prefect never calls the relay. The reconciler's first scan
	// sets its cursor to "now"; runs finishing after it are delivered.
	time.Sleep(2 * time.Second)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	runs := terminalRuns(t, p, dep.ID)
	assertOnce(t, dj, runs)
	for id := range runs {
		for _, s := range dj.StatesOf(id) {
			if s == "Running" {
				t.Errorf("run %s: the reconciler only sends terminal states, got Running", id)
			}
		}
	}
}
