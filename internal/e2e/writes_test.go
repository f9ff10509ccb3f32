package e2e

// End-to-end tests of the write routes (routes 4, 5, 6, 9, 10, 11, 14, 15, 16,
// 23, 24, 30, 31, 32, 33, 36, numbered as on their handlers in internal/httpapi)
// as jobs: the api and TWO worker processes on a real redis-server, against a
// real Prefect. Each route's effect is checked in Prefect, and its answer
// against what Django reads.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// writeStack starts redis, an api (no in-process worker) and n workers.
// Whatever the test sends, no known secret may appear in any of their logs.
func writeStack(t *testing.T, prefectForAPI, prefectForWorkers string, n int) (api string, redisURL string, workers []*testenv.Proc) {
	t.Helper()
	redisURL = testenv.Redis(t)
	env := func(prefectURL string) map[string]string {
		return map[string]string{"PREFECT_API_URL": prefectURL, "REDIS_URL": redisURL, "JOB_ENCRYPTION_KEY": testJobKey,
			"RELAY_RECONCILE_INTERVAL": "0", "LOG_LEVEL": "info"}
	}
	apiProc := testenv.StartAPI(t, env(prefectForAPI))
	for i := 0; i < n; i++ {
		workers = append(workers, testenv.StartWorker(t, env(prefectForWorkers)))
	}
	t.Cleanup(func() {
		for _, proc := range append([]*testenv.Proc{apiProc}, workers...) {
			logs := proc.Logs()
			if logs == "" {
				t.Errorf("%s wrote no logs: the secret check below would prove nothing", proc)
			}
			for _, secret := range testSecrets {
				if strings.Contains(logs, secret) {
					t.Errorf("%s logged a secret (%q)", proc, secret)
				}
			}
		}
	})
	return apiProc.URL, redisURL, workers
}

// testSecrets are the secret values the write tests send.
var testSecrets = []string{"hunter2", "ab-pass-s3cret"}

func TestWriteRoutesThroughJobs(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	api, redisURL, _ := writeStack(t, p.URL, p.URL, 2)
	// Secrets travel in job payloads; none may reach Redis in clear.
	t.Cleanup(func() { assertNotInRedis(t, redisURL, testSecrets...) })

	t.Run("secret block create, upsert, delete", func(t *testing.T) { // routes 9, 10, 11
		name := testenv.Unique("E2E Secret")
		cleaned := strings.ToLower(strings.ReplaceAll(name, " ", ""))
		r := send(t, "POST", api+"/proxy/blocks/secret/", map[string]any{"blockName": name, "secret": "v1-hunter2"}).
			expect(t, 200).object(t)
		id := str(t, r, "block_id")
		if r["block_name"] != cleaned {
			t.Errorf("create = %v, want block_name %q", r, cleaned)
		}
		if v := prefectBlockValue(t, p, id); v != "v1-hunter2" {
			t.Errorf("Prefect has value %v", v)
		}
		u := send(t, "PUT", api+"/proxy/blocks/secret/", map[string]any{"blockName": name, "secret": `{"k": "v2"}`}).
			expect(t, 200).object(t)
		if u["block_id"] != id || u["block_name"] != cleaned { // Django stores block_name
			t.Errorf("upsert = %v, want the same block", u)
		}
		if v := prefectBlockValue(t, p, id); v != `{"k": "v2"}` {
			t.Errorf("Prefect has value %v after upsert", v)
		}
		if d := send(t, "DELETE", api+"/delete-a-block/"+id, nil).expect(t, 200); string(d.Body) != "null" {
			t.Errorf("delete body %s", d.Body)
		}
		if st := prefectStatus(p, "GET", "/block_documents/"+id); st != 404 {
			t.Errorf("block still there after delete: %d", st)
		}
		// Prefect's refusal is replayed: the Python proxy's 400 with Prefect's text.
		if d := send(t, "DELETE", api+"/delete-a-block/"+id, nil).expect(t, 400).detail(t); !strings.Contains(d, "not found") {
			t.Errorf("second delete detail %q", d)
		}
	})

	t.Run("airbyte server and connection blocks", func(t *testing.T) { // routes 4, 5, 6
		name := testenv.Unique("e2e-ab")
		r := send(t, "POST", api+"/proxy/blocks/airbyte/server/", map[string]any{"blockName": name,
			"serverHost": "airbyte.local", "serverPort": "8000", "apiVersion": "v1", "useSSL": false}).expect(t, 200).object(t)
		id := str(t, r, "block_id")
		if r["cleaned_block_name"] != name {
			t.Errorf("create = %v", r)
		}
		got := send(t, "GET", api+"/proxy/blocks/airbyte/server/"+name, nil).expect(t, 200).object(t)
		if got["block_id"] != id {
			t.Errorf("read after create = %v, want %s", got, id)
		}
		u := send(t, "PUT", api+"/proxy/blocks/airbyte/server/", map[string]any{"blockName": name,
			"serverHost": "airbyte2.local", "serverPort": "8001", "useSSL": true, "password": "ab-pass-s3cret"}).
			expect(t, 200).object(t)
		if u["block_id"] != id {
			t.Errorf("update = %v", u)
		}
		cfg := send(t, "GET", api+"/proxy/blocks/airbyte/server/block/"+name, nil).expect(t, 200).object(t)
		if cfg["host"] != "airbyte2.local" || cfg["port"] != 8001.0 {
			t.Errorf("config after update = %v", cfg)
		}
		conn := uuid.NewString()
		c := send(t, "PUT", api+"/proxy/blocks/airbyte/connection/", map[string]any{"serverBlockName": name,
			"connectionId": conn, "connectionBlockName": conn, "connectionName": "c", "extra": map[string]any{}}).
			expect(t, 200).object(t)
		var doc struct {
			Data map[string]any `json:"data"`
		}
		p.Do(t, "GET", "/block_documents/"+str(t, c, "block_id"), nil, &doc)
		if doc.Data["connection_id"] != conn {
			t.Errorf("connection block data %v", doc.Data)
		}
		p.Do(t, "DELETE", "/block_documents/"+str(t, c, "block_id"), nil, nil)
		p.Do(t, "DELETE", "/block_documents/"+id, nil, nil)
	})

	t.Run("deployment create, update, entrypoint, schedule, delete", func(t *testing.T) { // 14, 15, 16, 33, 30
		pool := testenv.Unique("pool")
		p.CreateWorkPool(t, pool, "ddp")
		org := testenv.Unique("org")
		name := "pipeline-" + org
		params := map[string]any{"config": map[string]any{"org_slug": org, "tasks": []any{}}}
		r := send(t, "POST", api+"/proxy/v1/deployments/", map[string]any{"flow_name": name, "deployment_name": name,
			"org_slug": org, "deployment_params": params, "cron": "0 1 * * *", "work_pool_name": pool,
			"work_queue_name": "ddp"}).expect(t, 200).object(t)
		dep, _ := r["deployment"].(map[string]any) // Django reads deployment.id and .name
		id := str(t, dep, "id")
		if dep["name"] != name {
			t.Errorf("create = %v", r)
		}
		d := send(t, "GET", api+"/proxy/deployments/"+id, nil).expect(t, 200).object(t)
		if d["cron"] != "0 1 * * *" || d["isScheduleActive"] != true || asJSON(d["parameters"]) != asJSON(params) {
			t.Errorf("deployment after create = %v", d)
		}
		ok := `{"success":1}`
		if b := send(t, "PUT", api+"/proxy/v1/deployments/"+id, map[string]any{"cron": "0 2 * * *",
			"deployment_params": params}).expect(t, 200).Body; string(b) != ok {
			t.Errorf("update body %s", b)
		}
		ep := "proxy/prefect_flows_runner.py:other_flow"
		if b := send(t, "PATCH", api+"/proxy/v1/deployments/"+id+"/entrypoint", map[string]any{"entrypoint": ep}).
			expect(t, 200).Body; string(b) != ok {
			t.Errorf("entrypoint body %s", b)
		}
		if b := send(t, "POST", api+"/proxy/deployments/"+id+"/set_schedule/inactive", map[string]any{}).
			expect(t, 200).Body; string(b) != ok {
			t.Errorf("set_schedule body %s", b)
		}
		d = send(t, "GET", api+"/proxy/deployments/"+id, nil).expect(t, 200).object(t)
		if d["cron"] != "0 2 * * *" || d["isScheduleActive"] != false || d["entrypoint"] != ep {
			t.Errorf("deployment after updates = %v", d)
		}
		send(t, "POST", api+"/proxy/deployments/"+id+"/set_schedule/sideways", map[string]any{}).expect(t, 422)
		if b := send(t, "DELETE", api+"/proxy/deployments/"+id, nil).expect(t, 200).Body; string(b) != "null" {
			t.Errorf("delete body %s", b)
		}
		if st := prefectStatus(p, "GET", "/deployments/"+id); st != 404 {
			t.Errorf("deployment still there: %d", st)
		}
	})

	t.Run("flow run create, schedule, cancel, retry, delete", func(t *testing.T) { // 31, 32, 36, 24, 23
		dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
		r := send(t, "POST", api+"/proxy/deployments/"+dep.ID+"/flow_run", map[string]any{}).expect(t, 200).object(t)
		runID := str(t, r, "flow_run_id") // Django reads flow_run_id and name
		str(t, r, "name")
		fr := p.GetFlowRun(t, runID)
		if fr["deployment_id"] != dep.ID {
			t.Errorf("flow run in Prefect = %v", fr)
		}
		at := time.Now().UTC().Add(2 * time.Hour).Truncate(time.Second)
		s := send(t, "POST", api+"/proxy/deployments/"+dep.ID+"/flow_run/schedule", map[string]any{
			"runParams": map[string]any{}, "scheduledTime": at.Format(time.RFC3339)}).expect(t, 200).object(t)
		sched := p.GetFlowRun(t, str(t, s, "flow_run_id"))
		if st, _ := time.Parse(time.RFC3339Nano, sched["expected_start_time"].(string)); !st.Equal(at) {
			t.Errorf("scheduled run starts %v, want %v", sched["expected_start_time"], at)
		}
		c := send(t, "POST", api+"/proxy/flow_runs/"+runID+"/set_state", map[string]any{
			"state": map[string]any{"name": "Cancelling", "type": "CANCELLING"}, "force": "True"}).expect(t, 200).object(t)
		if c["success"] != 1.0 { // the webapp checks res.success
			t.Errorf("cancel = %v", c)
		}
		if st := p.GetFlowRun(t, runID)["state_type"]; st != "CANCELLING" && st != "CANCELLED" {
			t.Errorf("state after cancel %v", st)
		}
		// Cancelling a run that is not PENDING/SCHEDULED is the route's 400.
		if d := send(t, "POST", api+"/proxy/flow_runs/"+runID+"/set_state", map[string]any{
			"state": map[string]any{"name": "Cancelling", "type": "CANCELLING"}, "force": "True"}).
			expect(t, 400).detail(t); d != "failed to cancel the queued manual job" {
			t.Errorf("second cancel detail %q", d)
		}
		failed := p.CreateFlowRunIn(t, dep.ID, "FAILED", "Failed")
		send(t, "POST", api+"/proxy/flow_runs/"+failed.ID+"/retry", map[string]any{"minutes": 5}).expect(t, 200)
		if fr := p.GetFlowRun(t, failed.ID); fr["state_name"] != "AwaitingRetry" || fr["state_type"] != "SCHEDULED" {
			t.Errorf("after retry: %v %v", fr["state_type"], fr["state_name"])
		}
		if b := send(t, "DELETE", api+"/proxy/flow_runs/"+runID, nil).expect(t, 200).Body; string(b) != `{"success":1}` {
			t.Errorf("delete body %s", b)
		}
		if st := prefectStatus(p, "GET", "/flow_runs/"+runID); st != 404 {
			t.Errorf("flow run still there: %d", st)
		}
		if d := send(t, "POST", api+"/proxy/deployments/"+unknownID+"/flow_run", nil).expect(t, 400).detail(t); d != "failed to create flow_run for deployment" {
			t.Errorf("unknown deployment detail %q", d)
		}
	})

	t.Run("respond-async gives 202 and the job API has the answer", func(t *testing.T) {
		dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
		r := send(t, "POST", api+"/proxy/deployments/"+dep.ID+"/flow_run", map[string]any{}, "Prefer", "respond-async").
			expect(t, 202)
		body := r.object(t)
		id := str(t, body, "job_id")
		if r.Header.Get("Location") != "/jobs/"+id || body["status_url"] != "/jobs/"+id ||
			r.Header.Get("Preference-Applied") != "respond-async" {
			t.Fatalf("202: %v %s", r.Header, r.Body)
		}
		j := send(t, "GET", api+"/jobs/"+id+"?wait=20s", nil).expect(t, 200).object(t)
		res, _ := j["result"].(map[string]any)
		if j["state"] != "succeeded" || j["type"] != "flowrun:create" || res["flow_run_id"] == nil {
			t.Fatalf("job = %v", j)
		}
		if fr := p.GetFlowRun(t, res["flow_run_id"].(string)); fr["deployment_id"] != dep.ID {
			t.Errorf("flow run = %v", fr)
		}
		send(t, "GET", api+"/jobs/"+uuid.NewString(), nil).expect(t, 404)
	})

	t.Run("idempotency key: one flow run, same answer; other body 422", func(t *testing.T) {
		dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
		key := testenv.Unique("idem")
		path := api + "/proxy/deployments/" + dep.ID + "/flow_run"
		a := send(t, "POST", path, map[string]any{}, "Idempotency-Key", key).expect(t, 200)
		b := send(t, "POST", path, map[string]any{}, "Idempotency-Key", key).expect(t, 200)
		if string(a.Body) != string(b.Body) {
			t.Errorf("answers differ: %s / %s", a.Body, b.Body)
		}
		send(t, "POST", path, map[string]any{"config": map[string]any{}}, "Idempotency-Key", key).expect(t, 422)
		if n := len(flowRunsOf(t, p, dep.ID)); n != 1 {
			t.Errorf("%d flow runs in Prefect, want 1", n)
		}
	})
}

// TestWorkerKilledMidJob: a worker is SIGKILLed after Prefect created the
// flow run but before the job recorded it. Another worker picks the job up
// once asynq's lease expires; Prefect's idempotency_key (the job id) keeps it
// to exactly one flow run. Every step waits for what it needs to see (the
// run created, the lease long expired), never for a fixed time.
func TestWorkerKilledMidJob(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for asynq's lease to expire (about a minute)")
	}
	p := testenv.Prefect(t)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})

	// In front of Prefect for the first worker: once Prefect has created the
	// run, its answer is held until the test ends. An answer that created
	// nothing (a 503 while Prefect's SQLite is locked, on a busy machine) is
	// passed on, and the worker retries.
	target, _ := url.Parse(strings.TrimSuffix(p.URL, "/api"))
	rp := httputil.NewSingleHostReverseProxy(target)
	createdRun := make(chan string, 8)
	release := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/create_flow_run") {
			rp.ServeHTTP(w, r)
			return
		}
		r.Header.Del("Accept-Encoding") // Prefect's answer in plain JSON, to read its id
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code/100 != 2 {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		var run struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &run) // checked against Prefect below
		// Prefect created the run; the worker never hears of it.
		createdRun <- run.ID
		<-release
	}))
	t.Cleanup(front.Close)
	// Cleanups run last-in first-out: release held handlers before Close
	// waits for them.
	t.Cleanup(func() { close(release) })

	api, redisURL, workers := writeStack(t, p.URL, front.URL+"/api", 1)
	r := send(t, "POST", api+"/proxy/deployments/"+dep.ID+"/flow_run", map[string]any{}, "Prefer", "respond-async").
		expect(t, 202)
	jobID := str(t, r.object(t), "job_id")
	var runID string
	select {
	case runID = <-createdRun:
	case <-time.After(3 * time.Minute):
		t.Fatal("Prefect never created the worker's flow run")
	}
	if runs := flowRunsOf(t, p, dep.ID); len(runs) != 1 || runs[0] != runID {
		t.Fatalf("flow runs before the kill = %v, want [%s]", runs, runID)
	}
	workers[0].Kill() // SIGKILL: no graceful shutdown, the job stays "active"

	// asynq's recoverer takes a task whose lease expired at least 30 s
	// before it looks, and a worker's recoverer looks as the worker starts
	// (then every minute). So the second worker starts once the dead
	// worker's lease on the job is that old, and recovers the job at once.
	waitLeaseExpired(t, redisURL, jobID, 30*time.Second+2*time.Second)
	// The second worker talks to Prefect directly.
	testenv.StartWorker(t, map[string]string{"PREFECT_API_URL": p.URL, "REDIS_URL": redisURL,
		"JOB_ENCRYPTION_KEY": testJobKey, "RELAY_RECONCILE_INTERVAL": "0"})
	var j map[string]any
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		j = send(t, "GET", api+"/jobs/"+jobID+"?wait=30s", nil).expect(t, 200).object(t)
		if j["state"] == "succeeded" || j["state"] == "failed" {
			break
		}
	}
	if j["state"] != "succeeded" {
		t.Fatalf("job after the kill = %v", j)
	}
	runs := flowRunsOf(t, p, dep.ID)
	if len(runs) != 1 || runs[0] != runID {
		t.Fatalf("flow runs in Prefect = %v, want exactly [%s]", runs, runID)
	}
	res, _ := j["result"].(map[string]any)
	if res["flow_run_id"] != runID || j["attempts"].(float64) < 2 {
		t.Errorf("job = %v, Prefect run %s", j, runID)
	}
}

// waitLeaseExpired waits until asynq's lease on the task (in any queue's
// lease set) expired more than age ago.
func waitLeaseExpired(t *testing.T, redisURL, taskID string, age time.Duration) {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "asynq:{*}:lease").Result()
	if err != nil {
		t.Fatal(err)
	}
	var key string
	var expiry time.Time
	for _, k := range keys {
		if score, err := rdb.ZScore(ctx, k, taskID).Result(); err == nil {
			key, expiry = k, time.Unix(int64(score), 0)
		}
	}
	if key == "" {
		t.Fatalf("no asynq lease on task %s (lease sets: %v)", taskID, keys)
	}
	// The lease is no longer extended: its expiry is fixed, so this wait is
	// bounded by the lease duration (30 s) plus age.
	if d := time.Until(expiry.Add(age)); d > 0 {
		if d > 2*time.Minute {
			t.Fatalf("lease on %s expires at %s, unexpectedly far ahead", taskID, expiry)
		}
		time.Sleep(d)
	}
	if score, err := rdb.ZScore(ctx, key, taskID).Result(); err != nil || !time.Unix(int64(score), 0).Equal(expiry) {
		t.Fatalf("lease on %s changed after the kill (score %v, %v): another worker holds it", taskID, score, err)
	}
}

// assertNotInRedis scans every key and value in Redis for the needles.
func assertNotInRedis(t *testing.T, redisURL string, needles ...string) {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	var dump strings.Builder
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	n := 0
	for iter.Next(ctx) {
		k := iter.Val()
		n++
		dump.WriteString(k + "\n")
		switch rdb.Type(ctx, k).Val() {
		case "string":
			dump.WriteString(rdb.Get(ctx, k).Val())
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		case "list":
			dump.WriteString(strings.Join(rdb.LRange(ctx, k, 0, -1).Val(), "\n"))
		case "set":
			dump.WriteString(strings.Join(rdb.SMembers(ctx, k).Val(), "\n"))
		case "zset":
			dump.WriteString(strings.Join(rdb.ZRange(ctx, k, 0, -1).Val(), "\n"))
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 || !strings.Contains(dump.String(), "asynq:") {
		t.Fatalf("Redis scan found %d keys and no asynq data: the scan is broken", n)
	}
	for _, s := range needles {
		if strings.Contains(dump.String(), s) {
			t.Errorf("%q is stored in Redis in clear", s)
		}
	}
}

// prefectBlockValue reads a secret block's value from Prefect.
func prefectBlockValue(t *testing.T, p *testenv.PrefectServer, id string) any {
	t.Helper()
	var doc struct {
		Data map[string]any `json:"data"`
	}
	p.Do(t, "GET", "/block_documents/"+id+"?include_secrets=true", nil, &doc)
	return doc.Data["value"]
}

// prefectStatus is the status Prefect answers (0 when unreachable).
func prefectStatus(p *testenv.PrefectServer, method, path string) int {
	req, _ := http.NewRequest(method, p.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// flowRunsOf lists the ids of a deployment's flow runs in Prefect.
func flowRunsOf(t *testing.T, p *testenv.PrefectServer, depID string) []string {
	t.Helper()
	var runs []struct{ ID string }
	p.Do(t, "POST", "/flow_runs/filter", map[string]any{
		"flow_runs": map[string]any{"deployment_id": map[string]any{"any_": []string{depID}}}}, &runs)
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}
