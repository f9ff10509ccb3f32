package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestWritesRetryForAWindowNotAnAttemptCount is issue 7's "outages measured
// in time" against a real Prefect behind a front that answers 503 to
// everything while "down", with an api and a worker per case on a real Redis:
//   - a write queued during a 40 s outage succeeds after Prefect returns (the
//     first attempt after the return comes within the 60 s backoff cap), and
//     Prefect holds exactly one run;
//   - with JOB_RETRY_WINDOW=15s and Prefect down for good, the job fails when
//     the window has passed (not when JOB_MAX_ATTEMPTS is used up), with the
//     503 as its error;
//   - a 4xx from Prefect fails the job at its first attempt.
func TestWritesRetryForAWindowNotAnAttemptCount(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Prefect and waits out a 40 s outage")
	}
	p := testenv.Prefect(t)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})

	stack := func(t *testing.T, window string) (api string, down *atomic.Bool, refused *atomic.Int64) {
		target, _ := url.Parse(strings.TrimSuffix(p.URL, "/api"))
		rp := httputil.NewSingleHostReverseProxy(target)
		down, refused = new(atomic.Bool), new(atomic.Int64)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				refused.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"exception_message":"Service Unavailable"}`))
				return
			}
			rp.ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)
		env := map[string]string{
			"PREFECT_API_URL": front.URL + "/api", "REDIS_URL": testenv.Redis(t), "JOB_ENCRYPTION_KEY": testJobKey,
			"JOB_RETRY_WINDOW": window, "RELAY_RECONCILE_INTERVAL": "0", "LOG_LEVEL": "info",
		}
		api = testenv.StartAPI(t, env).URL
		testenv.StartWorker(t, env)
		return api, down, refused
	}
	queue := func(t *testing.T, api, deploymentID string) string {
		r := send(t, "POST", api+"/proxy/deployments/"+deploymentID+"/flow_run", map[string]any{}, "Prefer", "respond-async").expect(t, 202)
		return str(t, r.object(t), "job_id")
	}

	t.Run("outage shorter than the window", func(t *testing.T) {
		t.Parallel()
		api, down, refused := stack(t, "3m")
		down.Store(true)
		id := queue(t, api, dep.ID)
		const outage = 40 * time.Second
		time.Sleep(outage)
		if j := job(t, api, id, ""); j["state"] != "retrying" {
			t.Fatalf("after %s of 503s the job is %v, want retrying", outage, j)
		}
		attemptsDown := refused.Load()
		down.Store(false)
		back := time.Now()
		j := job(t, api, id, "60s")
		for j["state"] != "succeeded" && j["state"] != "failed" && time.Since(back) < 90*time.Second {
			j = job(t, api, id, "30s")
		}
		if j["state"] != "succeeded" {
			t.Fatalf("%s after Prefect's return the job is %v", time.Since(back).Round(time.Second), j)
		}
		after := time.Since(back)
		// The backoff is capped at 50 s (60 s with jitter).
		if after > 65*time.Second {
			t.Errorf("the job succeeded %s after Prefect's return; the backoff cap is 60 s", after.Round(time.Second))
		}
		if n := len(runsOfDeployment(t, p, dep.ID)); n != 1 {
			t.Errorf("Prefect holds %d runs of the deployment, want 1", n)
		}
		t.Logf("%s outage: %d requests refused with 503, job %v attempts, succeeded %s after Prefect's return",
			outage, attemptsDown, j["attempts"], after.Round(100*time.Millisecond))

		// A 4xx (no such deployment) fails at once.
		id = queue(t, api, uuid.NewString())
		j = job(t, api, id, "30s")
		if j["state"] != "failed" || j["attempts"] != float64(1) {
			t.Errorf("flow run of a missing deployment: job %v, want failed at its first attempt", j)
		}
	})

	t.Run("outage longer than the window", func(t *testing.T) {
		t.Parallel()
		api, down, _ := stack(t, "15s")
		down.Store(true)
		start := time.Now()
		id := queue(t, api, dep.ID)
		j := job(t, api, id, "60s")
		for j["state"] != "failed" && j["state"] != "succeeded" && time.Since(start) < 90*time.Second {
			j = job(t, api, id, "30s")
		}
		took := time.Since(start)
		if j["state"] != "failed" {
			t.Fatalf("Prefect down for good, JOB_RETRY_WINDOW=15s: after %s the job is %v", took.Round(time.Second), j)
		}
		e, _ := j["error"].(map[string]any)
		if e["status"] != float64(503) {
			t.Errorf("job error = %v, want Prefect's 503", j["error"])
		}
		// The window ends retries: far fewer attempts than JOB_MAX_ATTEMPTS
		// (100), and no sooner than the window.
		if a, _ := j["attempts"].(float64); a >= 100 || took < 15*time.Second {
			t.Errorf("failed after %s and %v attempts; want the 15 s window to end it", took.Round(time.Second), j["attempts"])
		}
		t.Logf("JOB_RETRY_WINDOW=15s, Prefect down: failed after %s, %v attempts", took.Round(100*time.Millisecond), j["attempts"])
	})
}

// job reads GET /jobs/{id}, long-polling up to wait when it is set.
func job(t *testing.T, api, id, wait string) map[string]any {
	t.Helper()
	u := api + "/jobs/" + id
	if wait != "" {
		u += "?wait=" + wait
	}
	return send(t, "GET", u, nil).expect(t, 200).object(t)
}
