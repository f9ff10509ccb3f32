package proxy

// Checks of the write operations against a real Prefect server: the one
// `make test` shares (PREFECT_TEST_API_URL), or one testenv starts; -short
// skips them. Every object gets a unique name, so a shared server is fine.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/retry"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func liveService(t *testing.T) *Service {
	t.Helper()
	u, err := url.Parse(testenv.Prefect(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	return New(prefect.New(prefect.Config{BaseURL: u, Timeout: 10 * time.Second}), log)
}

// runOp decodes and runs an op the way the job system does (payload
// re-encoded as JSON in between), retrying a retryable error as the job
// runner does: the server is shared with the whole `make test` run, and its
// SQLite answers 503 while another writer holds the lock.
func runOp(t *testing.T, s *Service, name string, params map[string]string, body string, jobID string) (any, error) {
	t.Helper()
	o, ok := writeOps()[name]
	if !ok {
		t.Fatalf("no op %s", name)
	}
	p, err := o.Decode(params, []byte(body))
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	// The shared Prefect's SQLite answers 503 when locked: retry as a job would.
	var v any
	err = retry.Do(context.Background(), 10, retry.Exponential{Base: 100 * time.Millisecond, Max: 2 * time.Second},
		func(ctx context.Context) error {
			v, err = o.Run(ctx, s, raw, Job{Key: jobID})
			if err != nil && !prefect.Retryable(err) {
				return retry.Permanent(err)
			}
			return err
		})
	return v, err
}

// okFn returns a checker for runOp's results: no error, the answer as JSON.
func okFn(t *testing.T) func(any, error) map[string]any {
	return func(v any, err error) map[string]any {
		t.Helper()
		return mustOK(t, v, err)
	}
}

func mustOK(t *testing.T, v any, err error) map[string]any {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func wantStatus(t *testing.T, err error, status int, detail string) {
	t.Helper()
	ae := apperr.From(err)
	if ae.Status() != status || (detail != "" && ae.Message != detail) {
		t.Fatalf("got %d %q (%v), want %d %q", ae.Status(), ae.Message, err, status, detail)
	}
}

func TestLiveBlocks(t *testing.T) {
	s := liveService(t)
	ok := okFn(t)
	ctx := context.Background()
	sfx := strings.ReplaceAll(uuid.NewString()[:8], "-", "")

	// Route 4: create; a second create of the same name with other data is 400.
	srvName := "Live_Server-" + sfx
	res := ok(runOp(t, s, OpAirbyteServerCreate, nil,
		`{"blockName":"`+srvName+`","serverHost":"airbyte.local","serverPort":"8001","apiVersion":"v1","useSSL":true}`, "j1"))
	clean := "liveserver-" + sfx
	if res["cleaned_block_name"] != clean {
		t.Fatalf("cleaned name %v", res)
	}
	srvID := res["block_id"].(string)
	// A retry of the same job (identical data) answers the same block.
	res2 := ok(runOp(t, s, OpAirbyteServerCreate, nil,
		`{"blockName":"`+srvName+`","serverHost":"airbyte.local","serverPort":"8001","apiVersion":"v1","useSSL":true}`, "j1"))
	if res2["block_id"] != srvID {
		t.Fatalf("retry gave %v, want %s", res2, srvID)
	}
	_, err := runOp(t, s, OpAirbyteServerCreate, nil,
		`{"blockName":"`+srvName+`","serverHost":"other","serverPort":"8001","apiVersion":"v1"}`, "j2")
	wantStatus(t, err, 400, "failed to create airbyte server block")

	// Route 5: partial update keeps the rest.
	res = ok(runOp(t, s, OpAirbyteServerUpdate, nil,
		`{"blockName":"`+clean+`","serverPort":"9000","password":"s3cret"}`, "j3"))
	if res["block_id"] != srvID || res["cleaned_block_name"] != clean {
		t.Fatalf("update answered %v", res)
	}
	doc, err := s.BlockDocumentByName(ctx, AirbyteServerSlug, clean)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"server_host": `"airbyte.local"`, "server_port": `9000`, "password": `"s3cret"`, "use_ssl": `true`, "username": `"airbyte"`} {
		if string(doc.Data[k]) != want {
			t.Errorf("%s = %s, want %s", k, doc.Data[k], want)
		}
	}
	_, err = runOp(t, s, OpAirbyteServerUpdate, nil, `{"blockName":"missing-`+sfx+`"}`, "j4")
	wantStatus(t, err, 400, "failed to update airbyte server block")

	// Route 6: upsert twice; the second overwrites.
	connID := uuid.NewString()
	body := `{"serverBlockName":"` + clean + `","connectionId":"` + strings.ToUpper(connID) + `","connectionBlockName":"conn-` + sfx + `","connectionName":"My conn","extra":{"env":{"a":1}}}`
	res = ok(runOp(t, s, OpAirbyteConnectionUpsert, nil, body, "j5"))
	connBlock := res["block_id"].(string)
	body = strings.Replace(body, `"a":1`, `"a":2`, 1)
	res = ok(runOp(t, s, OpAirbyteConnectionUpsert, nil, body, "j6"))
	if res["block_id"] != connBlock || res["cleaned_block_name"] != "conn-"+sfx {
		t.Fatalf("second upsert answered %v", res)
	}
	conn, err := s.BlockDocumentByName(ctx, AirbyteConnectionSlug, "conn-"+sfx)
	if err != nil {
		t.Fatal(err)
	}
	if string(conn.Data["connection_id"]) != `"`+connID+`"` {
		t.Errorf("connection_id %s", conn.Data["connection_id"])
	}
	var extra map[string]any
	_ = json.Unmarshal(conn.Data["extra"], &extra)
	if extra["name"] != "My conn" || extra["env"].(map[string]any)["a"] != float64(2) {
		t.Errorf("extra %s", conn.Data["extra"])
	}
	var nested map[string]json.RawMessage
	_ = json.Unmarshal(conn.Data["airbyte_server"], &nested)
	if string(nested["server_port"]) != "9000" {
		t.Errorf("nested server not resolved: %s", conn.Data["airbyte_server"])
	}
	_, err = runOp(t, s, OpAirbyteConnectionUpsert, nil,
		`{"serverBlockName":"nope-`+sfx+`","connectionId":"`+connID+`","connectionBlockName":"c2-`+sfx+`"}`, "j7")
	wantStatus(t, err, 400, "failed to upsert airbyte connection block")

	// Routes 9 and 10.
	res = ok(runOp(t, s, OpSecretCreate, nil, `{"secret":"{\"a\": 1}","blockName":"Git_PAT `+sfx+`"}`, "j8"))
	secName := "gitpat" + sfx
	if res["block_name"] != secName {
		t.Fatalf("secret answered %v", res)
	}
	secID := res["block_id"].(string)
	res = ok(runOp(t, s, OpSecretUpsert, nil, `{"secret":"v2","blockName":"`+secName+`"}`, "j9"))
	if res["block_id"] != secID {
		t.Fatalf("upsert answered %v", res)
	}
	res = ok(runOp(t, s, OpSecretCreate, nil, `{"secret":"v3","blockName":"`+secName+`"}`, "j10"))
	if res["block_id"] != secID {
		t.Fatalf("create-as-upsert answered %v", res)
	}
	sec, err := s.BlockDocumentByName(ctx, SecretSlug, secName)
	if err != nil || string(sec.Data["value"]) != `"v3"` {
		t.Fatalf("secret value %s %v", sec.Data["value"], err)
	}
	res = ok(runOp(t, s, OpSecretUpsert, nil, `{"secret":"new","blockName":"fresh-`+sfx+`"}`, "j11"))
	if res["block_name"] != "fresh-"+sfx {
		t.Fatalf("upsert-create answered %v", res)
	}

	// Prefect's own Python client loads what we wrote, in its own shape.
	venv, err := testenv.PrefectVenv()
	if err != nil {
		t.Fatal(err)
	}
	py := exec.Command(filepath.Join(venv, "bin", "python"), "-c", pythonLoad, clean, "conn-"+sfx, secName)
	py.Env = append(os.Environ(), "PREFECT_API_URL="+s.prefect.BaseURL(), "PREFECT_HOME="+t.TempDir())
	if out, err := py.CombinedOutput(); err != nil || !strings.Contains(string(out), "LOADED airbyte.local 9000 s3cret "+connID+" My conn 2 v3") {
		t.Fatalf("python load: %v\n%s", err, out)
	}

	// Route 11.
	for _, id := range []string{connBlock, srvID, secID, res["block_id"].(string)} {
		if v, err := runOp(t, s, OpBlockDelete, map[string]string{"block_id": id}, "", "j12"); err != nil || v != nil {
			t.Fatalf("delete %s: %v %v", id, v, err)
		}
	}
	_, err = runOp(t, s, OpBlockDelete, map[string]string{"block_id": srvID}, "", "j13")
	wantStatus(t, err, 400, `{"detail":"Block document not found"}`)
}

func TestLiveDeploymentsAndRuns(t *testing.T) {
	s := liveService(t)
	ok := okFn(t)
	ctx := context.Background()
	sfx := uuid.NewString()[:8]
	pool := "live-pool-" + sfx
	// Setup writes are retried (idempotent=true): a 503 from the shared
	// server's SQLite rolled the write back.
	if err := s.prefect.Do(ctx, http.MethodPost, "/work_pools/", map[string]any{"name": pool, "type": "process"}, nil, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.prefect.Do(ctx, http.MethodDelete, "/work_pools/"+pool, nil, nil, false) })

	// Unknown pool: 400.
	_, err := runOp(t, s, OpDeploymentCreate, nil,
		`{"flow_name":"x","deployment_name":"d-`+sfx+`","org_slug":"org","deployment_params":{"config":{}},"work_pool_name":"nope-`+sfx+`"}`, "")
	wantStatus(t, err, 400, "failed to create deployment")

	body := `{"flow_name":"pipeline-` + sfx + `","deployment_name":"pipeline-` + sfx + `","org_slug":"org-` + sfx + `","deployment_params":{"config":{"tasks":[],"org_slug":"org"}},"cron":"0 1 * * *","work_pool_name":"` + pool + `","work_queue_name":"q1"}`
	res := ok(runOp(t, s, OpDeploymentCreate, nil, body, ""))
	dep := res["deployment"].(map[string]any)
	depID := dep["id"].(string)
	if dep["name"] != "pipeline-"+sfx {
		t.Fatalf("create answered %v", res)
	}
	// Upsert: same name gives the same id.
	res = ok(runOp(t, s, OpDeploymentCreate, nil, body, ""))
	if res["deployment"].(map[string]any)["id"] != depID {
		t.Fatalf("upsert gave another id: %v", res)
	}
	t.Cleanup(func() { _ = s.prefect.Do(ctx, http.MethodDelete, "/deployments/"+depID, nil, nil, false) })

	read := func() DeploymentJSON {
		t.Helper()
		d, err := s.Deployment(ctx, depID)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := read()
	if d.Cron != "0 1 * * *" || !d.IsScheduleActive || string(d.Entrypoint) != `"`+s.DeploymentEntrypoint+`"` {
		t.Fatalf("created deployment %+v", d)
	}

	id := map[string]string{"deployment_id": depID}
	// set_schedule inactive / active.
	ok(runOp(t, s, OpDeploymentSetSchedule, map[string]string{"deployment_id": depID, "status": "inactive"}, "{}", ""))
	var raw struct {
		Paused    bool `json:"paused"`
		Schedules []struct {
			Active bool `json:"active"`
		} `json:"schedules"`
		WorkQueueName string `json:"work_queue_name"`
		Parameters    map[string]any
	}
	if err := s.prefect.Get(ctx, "/deployments/"+depID, &raw); err != nil {
		t.Fatal(err)
	}
	if !raw.Paused || raw.Schedules[0].Active || raw.WorkQueueName != "q1" {
		t.Fatalf("after inactive: %+v", raw)
	}
	ok(runOp(t, s, OpDeploymentSetSchedule, map[string]string{"deployment_id": depID, "status": "active"}, "{}", ""))
	if err := s.prefect.Get(ctx, "/deployments/"+depID, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Paused || !raw.Schedules[0].Active {
		t.Fatalf("after active: %+v", raw)
	}

	// Update: partial (params only keeps the cron), then cron null removes it.
	ok(runOp(t, s, OpDeploymentUpdate, id, `{"deployment_params":{"config":{"tasks":[1]}}}`, ""))
	if d = read(); d.Cron != "0 1 * * *" {
		t.Fatalf("params-only update touched cron: %+v", d)
	}
	ok(runOp(t, s, OpDeploymentUpdate, id, `{"cron":"5 4 * * *"}`, ""))
	if d = read(); d.Cron != "5 4 * * *" {
		t.Fatalf("cron update: %+v", d)
	}
	ok(runOp(t, s, OpDeploymentUpdate, id, `{"cron":null,"deployment_params":{"config":{}}}`, ""))
	if d = read(); d.Cron != "" {
		t.Fatalf("cron null kept the schedule: %+v", d)
	}
	_, err = runOp(t, s, OpDeploymentUpdate, id, `{"cron":"not a cron"}`, "")
	wantStatus(t, err, 400, "failed to update the deployment")
	_, err = runOp(t, s, OpDeploymentUpdate, map[string]string{"deployment_id": uuid.NewString()}, `{}`, "")
	wantStatus(t, err, 400, "failed to update the deployment")

	// Slugged schedules (created by someone else): replaced and removed too.
	slugged := `{"flow_name":"m","deployment_name":"slugged-` + sfx + `","org_slug":"org","deployment_params":{"config":{}},"work_pool_name":"` + pool + `"}`
	res = ok(runOp(t, s, OpDeploymentCreate, nil, slugged, ""))
	sid := map[string]string{"deployment_id": res["deployment"].(map[string]any)["id"].(string)}
	t.Cleanup(func() {
		_ = s.prefect.Do(ctx, http.MethodDelete, "/deployments/"+sid["deployment_id"], nil, nil, false)
	})
	if err := s.prefect.Do(ctx, http.MethodPost, "/deployments/"+sid["deployment_id"]+"/schedules",
		[]any{map[string]any{"schedule": map[string]any{"cron": "0 2 * * *"}, "active": true, "slug": "daily"},
			map[string]any{"schedule": map[string]any{"cron": "0 3 * * *"}, "active": true, "slug": "other"}}, nil, true); err != nil {
		t.Fatal(err)
	}
	ok(runOp(t, s, OpDeploymentSetSchedule, map[string]string{"deployment_id": sid["deployment_id"], "status": "inactive"}, "{}", ""))
	ok(runOp(t, s, OpDeploymentUpdate, sid, `{"cron":"0 9 * * *"}`, ""))
	var sl struct {
		Schedules []struct {
			Schedule struct{ Cron string }
			Active   bool
		}
	}
	if err := s.prefect.Get(ctx, "/deployments/"+sid["deployment_id"], &sl); err != nil || len(sl.Schedules) != 1 || sl.Schedules[0].Schedule.Cron != "0 9 * * *" {
		t.Fatalf("slugged schedules after update: %+v %v", sl, err)
	}
	ok(runOp(t, s, OpDeploymentUpdate, sid, `{"cron":null}`, ""))
	if err := s.prefect.Get(ctx, "/deployments/"+sid["deployment_id"], &sl); err != nil || len(sl.Schedules) != 0 {
		t.Fatalf("schedules after cron null: %+v %v", sl, err)
	}

	// Entrypoint.
	ok(runOp(t, s, OpDeploymentEntrypoint, id, `{"entrypoint":"proxy/prefect_flows.py:deployment_schedule_flow_v4"}`, ""))
	if d = read(); string(d.Entrypoint) != `"proxy/prefect_flows.py:deployment_schedule_flow_v4"` {
		t.Fatalf("entrypoint: %+v", d)
	}

	// Flow runs: the same job id twice gives one run.
	res = ok(runOp(t, s, OpFlowRunCreate, id, `{"config":{"tasks":[],"org_slug":"x"}}`, "job-"+sfx))
	runID := res["flow_run_id"].(string)
	if res["name"] == "" {
		t.Fatalf("run answered %v", res)
	}
	res = ok(runOp(t, s, OpFlowRunCreate, id, `{"config":{"tasks":[],"org_slug":"x"}}`, "job-"+sfx))
	if res["flow_run_id"] != runID {
		t.Fatalf("retried job created a second run: %v vs %s", res, runID)
	}
	_, err = runOp(t, s, OpFlowRunCreate, id, `{"config":"not an object"}`, "job2-"+sfx)
	wantStatus(t, err, 400, "failed to create flow_run for deployment")
	_, err = runOp(t, s, OpFlowRunCreate, map[string]string{"deployment_id": uuid.NewString()}, ``, "job3-"+sfx)
	wantStatus(t, err, 400, "failed to create flow_run for deployment")

	// Scheduled run in the future, then cancel it (SCHEDULED: Prefect moves it to CANCELLED).
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	res = ok(runOp(t, s, OpFlowRunSchedule, id, `{"runParams":{"config":{}},"scheduledTime":"`+at+`"}`, "job4-"+sfx))
	schedRun := res["flow_run_id"].(string)
	var fr struct {
		StateType         string `json:"state_type"`
		StateName         string `json:"state_name"`
		NextScheduledTime string `json:"next_scheduled_start_time"`
	}
	if err := s.prefect.Get(ctx, "/flow_runs/"+schedRun, &fr); err != nil {
		t.Fatal(err)
	}
	if fr.StateType != "SCHEDULED" {
		t.Fatalf("scheduled run %+v", fr)
	}
	rid := map[string]string{"flow_run_id": schedRun}
	// Django sends force as the string "True"/"False"; Prefect coerces it.
	ok(runOp(t, s, OpFlowRunCancel, rid, `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`, ""))
	if err := s.prefect.Get(ctx, "/flow_runs/"+schedRun, &fr); err != nil {
		t.Fatal(err)
	}
	if fr.StateType != "CANCELLED" && fr.StateType != "CANCELLING" {
		t.Fatalf("after cancel %+v", fr)
	}
	// A finished run is never cancelled.
	if err := s.prefect.Do(ctx, http.MethodPost, "/flow_runs/"+runID+"/set_state",
		map[string]any{"state": map[string]string{"type": "COMPLETED"}, "force": true}, nil, false); err != nil {
		t.Fatal(err)
	}
	_, err = runOp(t, s, OpFlowRunCancel, map[string]string{"flow_run_id": runID}, `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`, "")
	wantStatus(t, err, 400, "failed to cancel the queued manual job")
	if err := s.prefect.Get(ctx, "/flow_runs/"+runID, &fr); err != nil || fr.StateType != "COMPLETED" {
		t.Fatalf("completed run touched: %+v %v", fr, err)
	}

	// Retry: AwaitingRetry, scheduled in the future.
	ok(runOp(t, s, OpFlowRunRetry, map[string]string{"flow_run_id": runID}, `{"minutes":5}`, ""))
	if err := s.prefect.Get(ctx, "/flow_runs/"+runID, &fr); err != nil || fr.StateName != "AwaitingRetry" || fr.StateType != "SCHEDULED" {
		t.Fatalf("after retry %+v %v", fr, err)
	}

	// Delete the runs, then the deployment.
	for _, r := range []string{runID, schedRun} {
		ok(runOp(t, s, OpFlowRunDelete, map[string]string{"flow_run_id": r}, "", ""))
	}
	_, err = runOp(t, s, OpFlowRunDelete, map[string]string{"flow_run_id": runID}, "", "")
	wantStatus(t, err, 400, "failed to fetch flow_run "+runID)
	if v, err := runOp(t, s, OpDeploymentDelete, id, "", ""); err != nil || v != nil {
		t.Fatalf("delete deployment: %v %v", v, err)
	}
	_, err = runOp(t, s, OpDeploymentDelete, id, "", "")
	wantStatus(t, err, 400, `{"detail":"Deployment not found"}`)
}

// pythonLoad loads the blocks with Prefect's SDK and block classes declared
// as prefect-airbyte declares them (the package is not installed).
const pythonLoad = `
import sys, uuid
from pydantic import Field, SecretStr
from prefect.blocks.core import Block
from prefect.blocks.abstract import JobBlock
from prefect.blocks.system import Secret

class AirbyteServer(Block):
    _block_type_name = "Airbyte Server"
    _block_type_slug = "airbyte-server"
    username: str = Field(default="airbyte")
    password: SecretStr = Field(default=SecretStr("password"))
    server_host: str = Field(default="localhost")
    server_port: int = Field(default=8000)
    api_version: str = Field(default="v1")
    use_ssl: bool = Field(default=False)

class AirbyteConnection(JobBlock):
    _block_type_name = "Airbyte Connection"
    airbyte_server: AirbyteServer
    connection_id: uuid.UUID
    poll_interval_s: int = 15
    status_updates: bool = False
    timeout: int = 5
    extra: dict = {}
    async def trigger(self): pass

srv = AirbyteServer.load(sys.argv[1])
conn = AirbyteConnection.load(sys.argv[2])
sec = Secret.load(sys.argv[3])
assert conn.airbyte_server.server_host == srv.server_host
print("LOADED", srv.server_host, srv.server_port, srv.password.get_secret_value(),
      conn.connection_id, conn.extra["name"], conn.extra["env"]["a"], sec.get())
`
