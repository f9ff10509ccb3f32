package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
	"github.com/DalgoT4D/prefect-proxy-go/internal/worker"
	"github.com/DalgoT4D/prefect-proxy-go/internal/writes"
)

// TestLiveWritesAnswerAsDocumented sends Django's writes through the real
// handler, the real job system (an in-process worker on miniredis) and the
// real write operations to a real Prefect server; specChecked holds every
// request and answer to /openapi.json. It runs when PREFECT_TEST_API_URL
// names a server, as under make test.
func TestLiveWritesAnswerAsDocumented(t *testing.T) {
	if os.Getenv(testenv.EnvPrefectURL) == "" {
		t.Skip("set " + testenv.EnvPrefectURL + " to run against a real Prefect")
	}
	pf := testenv.Prefect(t)
	u, err := url.Parse(pf.URL)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	svc := proxy.New(prefect.New(prefect.Config{BaseURL: u, Timeout: 20 * time.Second}), log)
	pool := testenv.Unique("pool")
	svc.DefaultWorkPool, svc.DefaultWorkQueue = pool, "ddp"
	pf.Do(t, "POST", "/work_pools/", map[string]any{"name": pool, "type": "process"}, nil)
	t.Cleanup(func() { _, _ = pf.Call(context.Background(), "DELETE", "/work_pools/"+pool, nil, nil) })

	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := config.Config{ProxyAPIToken: "tok", JobWaitTimeout: 30 * time.Second, JobRetention: time.Hour,
		JobMaxAttempts: 3, WorkerConcurrency: 4, JobEncryptionKey: bytes.Repeat([]byte{7}, 32)}
	ops := writes.New(svc)
	w, err := worker.New(worker.Deps{Config: cfg, Log: log, Redis: rdb, Registry: prometheus.NewRegistry(),
		Ops: ops.Registry(), ShutdownTimeout: 5 * time.Second, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	jc, err := jobs.NewClient(context.Background(), rdb, jobs.ClientConfig{Key: cfg.JobEncryptionKey, Ops: ops.Registry(),
		MaxAttempts: cfg.JobMaxAttempts, Retention: cfg.JobRetention, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jc.Close)
	api := specChecked(t, New(Deps{Config: cfg, Log: log, Proxy: svc, Jobs: jc, Ops: ops}))

	do := func(method, path, body string, header ...string) (int, map[string]any) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	must := func(want int, method, path, body string, header ...string) map[string]any {
		t.Helper()
		status, m := do(method, path, body, header...)
		if status != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, status, m, want)
		}
		return m
	}
	sfx := strings.ReplaceAll(uuid.NewString()[:8], "-", "")

	// Blocks (routes 4–6, 9–11).
	ensureAirbyteServerType(t, pf)
	srv := must(200, "POST", "/proxy/blocks/airbyte/server/",
		`{"blockName":"srv-`+sfx+`","serverHost":"airbyte.local","serverPort":"8001","apiVersion":"v1","useSSL":false}`)
	must(400, "POST", "/proxy/blocks/airbyte/server/",
		`{"blockName":"srv-`+sfx+`","serverHost":"other","serverPort":"8001","apiVersion":"v1"}`)
	must(422, "POST", "/proxy/blocks/airbyte/server/", `{"blockName":"x"}`)
	must(200, "PUT", "/proxy/blocks/airbyte/server/", `{"blockName":"srv-`+sfx+`","serverPort":"9000","password":"pw"}`)
	conn := must(200, "PUT", "/proxy/blocks/airbyte/connection/", `{"serverBlockName":"srv-`+sfx+`","connectionId":"`+
		uuid.NewString()+`","connectionBlockName":"conn-`+sfx+`","connectionName":"c"}`)
	sec := must(200, "POST", "/proxy/blocks/secret/", `{"blockName":"sec-`+sfx+`","secret":"s1"}`)
	must(200, "PUT", "/proxy/blocks/secret/", `{"blockName":"sec-`+sfx+`","secret":"s2"}`)
	for _, b := range []map[string]any{conn, srv, sec} {
		id, _ := b["block_id"].(string)
		must(200, "DELETE", "/delete-a-block/"+id, "")
	}

	// Deployments (routes 14–16, 30, 33).
	dep := must(200, "POST", "/proxy/v1/deployments/", `{"flow_name":"f-`+sfx+`","deployment_name":"d-`+sfx+
		`","org_slug":"org","deployment_params":{"config":{"tasks":[]}},"cron":"0 1 * * *","work_pool_name":"`+pool+`","work_queue_name":"q1"}`)
	must(400, "POST", "/proxy/v1/deployments/", `{"flow_name":"f","deployment_name":"x-`+sfx+
		`","org_slug":"org","deployment_params":{},"work_pool_name":"nope-`+sfx+`"}`)
	depID, _ := dep["deployment"].(map[string]any)["id"].(string)
	t.Cleanup(func() { _, _ = pf.Call(context.Background(), "DELETE", "/deployments/"+depID, nil, nil) })
	must(200, "PUT", "/proxy/v1/deployments/"+depID, `{"cron":"5 4 * * *","deployment_params":{"config":{}}}`)
	must(200, "PATCH", "/proxy/v1/deployments/"+depID+"/entrypoint", `{"entrypoint":"proxy/flows.py:run"}`)
	must(200, "POST", "/proxy/deployments/"+depID+"/set_schedule/inactive", "")
	must(200, "POST", "/proxy/deployments/"+depID+"/set_schedule/active", "")

	// Flow runs (routes 17, 23, 24, 31, 32, 36), synchronous and asynchronous.
	run := must(200, "POST", "/proxy/deployments/"+depID+"/flow_run/", `{"config":{"org_slug":"org"}}`)
	runID, _ := run["flow_run_id"].(string)
	accepted := must(202, "POST", "/proxy/deployments/"+depID+"/flow_run/", `{}`, "Prefer", "respond-async")
	jobURL, _ := accepted["status_url"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for {
		job := must(200, "GET", jobURL, "")
		if job["state"] == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %v never succeeded", job)
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(404, "GET", "/jobs/"+uuid.NewString(), "")
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	sched := must(200, "POST", "/proxy/deployments/"+depID+"/flow_run/schedule/", `{"runParams":{"config":{}},"scheduledTime":"`+at+`"}`)
	schedID, _ := sched["flow_run_id"].(string)
	must(200, "POST", "/proxy/flow_runs/"+schedID+"/set_state/", `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`)
	pf.Do(t, "POST", "/flow_runs/"+runID+"/set_state", map[string]any{"state": map[string]string{"type": "FAILED"}, "force": true}, nil)
	must(200, "POST", "/proxy/flow_runs/"+runID+"/retry", `{"minutes":5}`)
	must(422, "POST", "/proxy/flow_runs/"+runID+"/retry", `{"minutes":"soon"}`)
	must(200, "DELETE", "/proxy/flow_runs/"+schedID, "")
	must(200, "DELETE", "/proxy/deployments/"+depID, "")
	if !t.Failed() {
		specLiveRan.Store(true)
	}
}
