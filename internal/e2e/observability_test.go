package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// Against a real Prefect and Redis, with an api and a worker process:
// /readyz?verbose on both reports Redis, Prefect and Django; METRICS_TOKEN
// guards /metrics, which shows queue sizes and Prefect calls by route
// template; a write's request id appears in the worker's log of its job.
func TestObservabilityAcrossProcesses(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	django := testenv.NewDjango(t, "relay-key")
	env := map[string]string{
		"PREFECT_API_URL": p.URL, "REDIS_URL": testenv.Redis(t), "JOB_ENCRYPTION_KEY": testJobKey,
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "relay-key", "DJANGO_WEBHOOK_URL": django.URL,
		"RELAY_RECONCILE_INTERVAL": "0", "METRICS_TOKEN": "metrics-tok",
	}
	api := testenv.StartAPI(t, env)
	worker := testenv.StartWorker(t, env)

	// The worker also reports Prefect's event stream (RELAY_EVENTS is on by
	// default): ok once its subscriber is connected and backfilled.
	for _, c := range []struct {
		proc   *testenv.Proc
		checks int
	}{{api, 3}, {worker, 4}} {
		send(t, "GET", c.proc.URL+"/readyz", nil).expect(t, 200)
		var rep obs.Report
		deadline := time.Now().Add(60 * time.Second)
		for {
			if err := json.Unmarshal(send(t, "GET", c.proc.URL+"/readyz?verbose", nil).expect(t, 200).Body, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Status == "ok" || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if rep.Status != "ok" || len(rep.Checks) != c.checks {
			t.Errorf("%s /readyz?verbose: %+v, want redis, prefect and django ok (and events on the worker)", c.proc, rep)
		}
	}

	// A run of a deployment Prefect does not know: the job fails in the
	// worker, which logs it with the request's id.
	requestID := "e2e-" + uuid.NewString()
	send(t, "POST", api.URL+"/proxy/deployments/"+uuid.NewString()+"/flow_run", map[string]any{},
		"X-Request-Id", requestID).expect(t, 400)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(worker.Logs(), "request_id="+requestID) {
		if time.Now().After(deadline) {
			t.Fatalf("no worker log line with request_id=%s:\n%s", requestID, worker.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(api.Logs(), "\n") {
		if strings.Contains(line, "request_id="+requestID) && !strings.Contains(line, "job_id=") {
			t.Errorf("the write's access-log line has no job_id: %s", line)
		}
	}

	send(t, "GET", api.URL+"/metrics", nil).expect(t, 401)
	send(t, "GET", worker.URL+"/metrics", nil).expect(t, 401)
	apiMetrics := string(send(t, "GET", api.URL+"/metrics", nil, "Authorization", "Bearer metrics-tok").expect(t, 200).Body)
	workerMetrics := string(send(t, "GET", worker.URL+"/metrics", nil, "Authorization", "Bearer metrics-tok").expect(t, 200).Body)
	for _, want := range []string{`asynq_queue_size{queue="critical"}`, `route="/api/health",status="200",upstream="prefect"`} {
		if !strings.Contains(apiMetrics, want) {
			t.Errorf("api /metrics lacks %s", want)
		}
	}
	for _, want := range []string{`route="/api/deployments/:id/create_flow_run",status="404",upstream="prefect"`,
		"relay_events_connected 1", "relay_events_leader 1", `relay_events_received_total{source="live"}`,
		"relay_events_cursor_timestamp_seconds", "relay_events_reconnects_total", "relay_events_lag_seconds_bucket"} {
		if !strings.Contains(workerMetrics, want) {
			t.Errorf("worker /metrics lacks %s", want)
		}
	}
}
