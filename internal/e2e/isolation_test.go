package e2e

// Workload isolation (README "Configuration", RELAY_CONCURRENCY): relay
// deliveries and write jobs run in separate pools of the worker, so a slow
// Django holding every delivery slot does not slow Django's own writes.
// Real Prefect, real Redis, the api and worker binaries.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func TestSlowDjangoDoesNotSlowWrites(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	redisURL := testenv.Redis(t)

	// A Django that answers after 20 s: past the relay's 15 s timeout, so
	// every delivery holds its slot for the whole timeout and then retries.
	release := make(chan struct{})
	var arrived, inFlight atomic.Int64
	django := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived.Add(1)
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-time.After(20 * time.Second):
		case <-r.Context().Done():
		case <-release:
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(django.Close)

	inKey := testenv.Unique("inbound")
	env := map[string]string{
		"REDIS_URL":                         redisURL,
		"JOB_ENCRYPTION_KEY":                testJobKey,
		"PREFECT_API_URL":                   p.URL,
		"RELAY_INBOUND_KEY":                 inKey,
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": relayDjangoKey,
		"DJANGO_WEBHOOK_URL":                django.URL + "/webhooks/v1/notification/",
		"RELAY_RETRY_SCHEDULE":              "5s",
		"RELAY_RECONCILE_INTERVAL":          "0",
		"RELAY_EVENTS":                      "off",
		"WORKER_CONCURRENCY":                "10",
		"RELAY_CONCURRENCY":                 "10",
		"LOG_LEVEL":                         "warn",
	}
	api := testenv.StartAPI(t, env)
	worker := testenv.StartWorker(t, env)
	// Registered last, run first: free Django's held requests so the
	// worker's shutdown does not wait on them.
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })

	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})

	// 200 notifications queued (the relay-setup template: complete, so no
	// Prefect lookup stands between the queue and Django).
	const notifications = 200
	ts := time.Now().UTC()
	for i := range notifications {
		body := fmt.Sprintf(`{"flow_run_id":%q,"flow_run_name":"run-%d","state_name":"Completed","state_type":"COMPLETED","state_timestamp":%q}`,
			uuid.NewString(), i, ts.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano))
		send(t, "POST", api.URL+"/webhooks/v1/notification/", body, "X-Notification-Key", inKey).expect(t, 202)
	}
	// Wait until the relay pool is full: every delivery slot held by Django.
	deadline := time.Now().Add(30 * time.Second)
	for inFlight.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("Django holds %d deliveries, want 10", inFlight.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	metrics := send(t, "GET", worker.URL+"/metrics", nil).expect(t, 200)
	for _, want := range []string{
		`proxy_worker_pool_concurrency{pool="relay"} 10`, `proxy_worker_pool_concurrency{pool="write"} 10`,
		`proxy_worker_pool_in_flight{pool="relay"} 10`,
	} {
		if !strings.Contains(string(metrics.Body), want) {
			t.Errorf("worker /metrics lacks %s", want)
		}
	}

	// Django's own writes, one after another, while the relay is stuck.
	var latencies []string
	for i := range 10 {
		r := send(t, "POST", api.URL+"/proxy/deployments/"+dep.ID+"/flow_run", map[string]any{}).expect(t, 200)
		str(t, r.object(t), "flow_run_id")
		latencies = append(latencies, r.Elapsed.Round(time.Millisecond).String())
		if r.Elapsed >= 2*time.Second {
			t.Errorf("write %d took %s with Django slow; want under 2 s", i, r.Elapsed)
		}
	}
	t.Logf("flow-run writes with %d notifications queued and Django answering after 20 s (%d requests held so far, %d in flight): %s",
		notifications, arrived.Load(), inFlight.Load(), strings.Join(latencies, " "))
}
