package e2e

// The relay is off until an operator turns it on, and its reconciler waits
// until relay-setup has made the relay Django's path (docs/ARCHITECTURE.md,
// "Relay"): real Prefect, real Redis, the api and worker binaries.

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func TestRelayOffWithoutDjangosKey(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	dj := testenv.NewDjango(t, relayDjangoKey)
	redisURL := testenv.Redis(t)
	// Even an explicit reconciler period does nothing while the relay is off.
	api, _ := startRelayEnv(t, p, dj, "", map[string]string{
		"REDIS_URL": redisURL, "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "", "RELAY_INBOUND_KEY": "", "RELAY_RECONCILE_INTERVAL": "1s",
	})
	req, _ := http.NewRequest("POST", api.URL+"/webhooks/v1/notification/", strings.NewReader(`{"body": "x"}`))
	req.Header.Set("X-Notification-Key", "anything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "PREFECT_NOTIFICATIONS_WEBHOOK_KEY") {
		t.Fatalf("ingress with the relay off: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(api.Logs(), "relay off: PREFECT_NOTIFICATIONS_WEBHOOK_KEY is unset") {
		t.Errorf("the api does not say the relay is off:\n%s", api.Logs())
	}
	time.Sleep(2 * time.Second) // a reconciler would have taken its cursor by now
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	terminalRuns(t, p, dep.ID)
	time.Sleep(4 * time.Second) // several 1 s reconciler periods
	if n := len(dj.Requests()); n != 0 {
		t.Fatalf("Django got %d requests from a relay that is off", n)
	}
	rdb := redisClient(t, redisURL)
	keys, err := rdb.Keys(context.Background(), "relay:*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("relay state in Redis while off: %v %v", keys, err)
	}
	if n, _ := rdb.Exists(context.Background(), "asynq:{relay}:pending", "asynq:{relay}:retry").Result(); n != 0 {
		t.Fatalf("relay deliveries queued while off")
	}
}

func TestRelayReconcilerWaitsForSetupAndReplacesTheDirectAutomation(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	dj := testenv.NewDjango(t, relayDjangoKey)
	inKey := testenv.Unique("inbound")
	redisURL := testenv.Redis(t)
	// RELAY_RECONCILE_INTERVAL unset: the default period, held back until setup.
	api, _ := startRelayEnv(t, p, dj, inKey, map[string]string{"REDIS_URL": redisURL, "RELAY_RECONCILE_INTERVAL": ""})
	if !strings.Contains(api.Logs(), "once relay-setup has installed Prefect's automation") {
		t.Errorf("the api does not say the reconciler waits for relay-setup:\n%s", api.Logs())
	}

	// Prefect's old automation, calling Django directly (a do-nothing stand-in).
	direct := testenv.Unique("Flow Run State Change Notification")
	var created struct {
		ID string `json:"id"`
	}
	p.Do(t, "POST", "/automations/", map[string]any{
		"name": direct, "enabled": true,
		"trigger": map[string]any{"type": "event", "posture": "Reactive", "threshold": 1, "within": 0,
			"match": map[string]any{"prefect.resource.id": "prefect.flow-run.*"}, "expect": []string{"prefect.flow-run.Completed"}},
		"actions": []any{map[string]any{"type": "do-nothing"}},
	}, &created)
	t.Cleanup(func() { _, _ = p.Call(context.Background(), "DELETE", "/automations/"+created.ID, nil, nil) })

	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	before := terminalRuns(t, p, dep.ID) // Prefect still owns these: never from the relay

	// The automation's tag matches no run, so what reaches Django below came from the reconciler.
	res := relaySetupEnv(t, p, map[string]string{"RELAY_INBOUND_KEY": inKey, "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": relayDjangoKey, "REDIS_URL": redisURL},
		"-url", api.URL+"/webhooks/v1/notification/", "-replace", direct,
		"-block-name", testenv.Unique("relay-e2e"), "-automation-name", testenv.Unique("relay-e2e"), "-tags", testenv.Unique("no-run-has-it"))
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = p.Call(ctx, "DELETE", "/automations/"+res["automation_id"].(string), nil, nil)
		_, _ = p.Call(ctx, "DELETE", "/block_documents/"+res["block_document_id"].(string), nil, nil)
	})
	if res["recorded_in_redis"] != true {
		t.Fatalf("setup did not record the switch: %v", res)
	}
	if d, _ := res["disabled"].([]any); len(d) != 1 || d[0] != created.ID {
		t.Fatalf("setup disabled %v, want [%s]", res["disabled"], created.ID)
	}
	var old map[string]any
	p.Do(t, "GET", "/automations/"+created.ID, nil, &old)
	if old["enabled"] != false {
		t.Fatalf("the direct automation is still enabled in Prefect: %v", old)
	}

	after := terminalRuns(t, p, dep.ID)
	assertOnce(t, dj, after) // within the default 30 s period plus delivery
	for id := range before {
		if got := dj.StatesOf(id); len(got) != 0 {
			t.Errorf("run %s ended before the switch, yet the relay sent %v", id, got)
		}
	}
}

func redisClient(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
