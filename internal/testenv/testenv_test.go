package testenv

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestRedisStartsAndStops(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: starts a redis-server")
	}
	r, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(r.Addr); err != nil {
		t.Fatalf("ping %s: %v", r.URL, err)
	}
	if !strings.HasPrefix(r.URL, "redis://127.0.0.1:") {
		t.Errorf("URL = %q", r.URL)
	}
	r.Stop()
	if err := ping(r.Addr); err == nil {
		t.Errorf("redis still answers after Stop")
	}
}

func TestDjangoAppliesDjangosChecks(t *testing.T) {
	t.Parallel()
	const id = "3b55ee18-7511-4ede-abba-ad866ebf982c"
	cases := []struct {
		name      string
		noKey     bool // Django's env var unset
		header    *string
		body      string
		status    int
		accepted  bool
		wantState string
	}{
		{name: "canonical text is accepted", header: ptr("k"),
			body: `{"body": "Flow run glossy-bittern with id ` + id + ` entered state Completed"}`, status: 200, accepted: true, wantState: "Completed"},
		{name: "wrong key gives 400", header: ptr("nope"),
			body: `{"body": "Flow run a with id ` + id + ` entered state Completed"}`, status: 400},
		{name: "missing key gives 400", body: `{"body": "x"}`, status: 400},
		{name: "no key configured and none sent is accepted", noKey: true,
			body: `{"body": "Flow run a with id ` + id + ` entered state Running"}`, status: 200, accepted: true, wantState: "Running"},
		{name: "name with underscore is silently dropped", header: ptr("k"),
			body: `{"body": "Flow run my_run with id ` + id + ` entered state Failed"}`, status: 200},
		{name: "state is cut at underscore", header: ptr("k"),
			body: `{"body": "Flow run a with id ` + id + ` entered state DBT_TEST_FAILED"}`, status: 200, accepted: true, wantState: "DBT"},
		{name: "object body gives 500", header: ptr("k"), body: `{"body": {"id": "` + id + `"}}`, status: 500},
		{name: "missing body key gives 500", header: ptr("k"), body: `{"text": "x"}`, status: 500},
		{name: "flow run JSON string gives unknown state", header: ptr("k"),
			body:   `{"body": "{\"id\": \"` + id + `\", \"state\": {\"state_details\": {\"flow_run_id\": \"` + id + `\"}}}"}`,
			status: 200, accepted: true, wantState: "unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var d *Django
			if tc.noKey {
				d = NewDjangoNoKey(t)
			} else {
				d = NewDjango(t, "k")
			}
			req, _ := http.NewRequest("POST", d.URL, strings.NewReader(tc.body))
			if tc.header != nil {
				req.Header.Set("X-Notification-Key", *tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			reqs := d.Requests()
			if len(reqs) != 1 || reqs[0].Accepted != tc.accepted {
				t.Fatalf("recorded %+v, want one with accepted=%v", reqs, tc.accepted)
			}
			if tc.accepted && (reqs[0].FlowRunID != id || reqs[0].State != tc.wantState) {
				t.Errorf("parsed (%s, %s), want (%s, %s)", reqs[0].FlowRunID, reqs[0].State, id, tc.wantState)
			}
		})
	}
}

func TestDjangoRespondWith(t *testing.T) {
	t.Parallel()
	d := NewDjango(t, "k")
	d.RespondWith(func(n int) int {
		if n == 0 {
			return 503
		}
		return 0
	})
	body := `{"body": "Flow run a with id 3b55ee18-7511-4ede-abba-ad866ebf982c entered state Failed"}`
	for _, want := range []int{503, 200} {
		req, _ := http.NewRequest("POST", d.URL, strings.NewReader(body))
		req.Header.Set("X-Notification-Key", "k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("status = %d, want %d", resp.StatusCode, want)
		}
	}
	if !d.WaitForState(time.Second, "3b55ee18-7511-4ede-abba-ad866ebf982c", "Failed") {
		t.Errorf("state not recorded: %+v", d.Requests())
	}
}

// TestPrefectSeeding checks the seeding helpers produce what the proxy's read
// routes walk: graphs with a subflow, a DBT_TEST_FAILED task run, >200 logs.
func TestPrefectSeeding(t *testing.T) {
	p := Prefect(t)
	org := Unique("org")
	dep := p.CreateDeployment(t, DeploymentSpec{Tags: []string{org}, Cron: "0 1 * * *",
		Parameters: map[string]any{"config": map[string]any{"org_slug": org}}})
	run := p.CreateFlowRunIn(t, dep.ID, "COMPLETED", "")
	got := p.GetFlowRun(t, run.ID)
	if got["state_type"] != "COMPLETED" || got["start_time"] == nil || got["end_time"] == nil {
		t.Errorf("run = %v", got)
	}
	p.CreateTaskRun(t, run.ID, "dbt-test", "COMPLETED", "DBT_TEST_FAILED")
	sub := p.CreateSubflow(t, run.ID, "", "COMPLETED", "")

	var v1 []map[string]any
	p.Do(t, "GET", "/flow_runs/"+run.ID+"/graph", nil, &v1)
	foundChild := false
	for _, n := range v1 {
		st, _ := n["state"].(map[string]any)
		sd, _ := st["state_details"].(map[string]any)
		if sd["child_flow_run_id"] == sub.RunID {
			foundChild = true
		}
	}
	if !foundChild {
		t.Errorf("v1 graph has no node with child_flow_run_id %s: %v", sub.RunID, v1)
	}
	var v2 struct {
		Nodes [][]json.RawMessage `json:"nodes"`
	}
	p.Do(t, "GET", "/flow_runs/"+run.ID+"/graph-v2", nil, &v2)
	kinds := map[string]int{}
	for _, n := range v2.Nodes {
		var node struct{ Kind, ID string }
		_ = json.Unmarshal(n[1], &node)
		kinds[node.Kind]++
		if node.Kind == "flow-run" && node.ID != sub.RunID {
			t.Errorf("flow-run node %s, want %s", node.ID, sub.RunID)
		}
	}
	if kinds["flow-run"] != 1 || kinds["task-run"] < 1 {
		t.Errorf("graph-v2 kinds = %v, want one flow-run and task-runs", kinds)
	}

	p.WriteLogs(t, run.ID, "", "line", 250, time.Now().Add(-time.Hour))
	var logs []map[string]any
	p.Do(t, "POST", "/logs/filter", map[string]any{"logs": map[string]any{"flow_run_id": map[string]any{"any_": []string{run.ID}}}, "offset": 200}, &logs)
	if len(logs) != 50 || logs[0]["message"] != "line 0200" {
		t.Errorf("logs from offset 200: %d, first %v", len(logs), logs[0]["message"])
	}

	id := p.CreateSecretBlock(t, Unique("sec"), `{"a": 1}`)
	if len(id) != 36 {
		t.Errorf("secret block id %q", id)
	}
	pool := Unique("pool")
	p.CreateWorkPool(t, pool, "ddp")
	p.WorkerHeartbeat(t, pool, "w1")
}

func TestStartAPIAndWorker(t *testing.T) {
	p := Prefect(t)
	redisURL := Redis(t)
	api := StartAPI(t, map[string]string{"PREFECT_API_URL": p.URL, "REDIS_URL": redisURL, "JOB_ENCRYPTION_KEY": testKey})
	resp, err := http.Get(api.URL + "/proxy/prefect/version")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Trim(strings.TrimSpace(string(b)), `"`) != p.Version {
		t.Errorf("version = %d %s, want %q", resp.StatusCode, b, p.Version)
	}

	w := StartWorker(t, map[string]string{"PREFECT_API_URL": p.URL, "REDIS_URL": redisURL, "JOB_ENCRYPTION_KEY": testKey})
	resp, err = http.Get(w.URL + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("worker livez = %d", resp.StatusCode)
	}
	if err := w.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !w.WaitExit(15 * time.Second) {
		t.Fatalf("worker did not exit on SIGTERM")
	}
	if w.ExitErr() != nil {
		t.Errorf("worker exit: %v\n%s", w.ExitErr(), w.Logs())
	}
}

// testKey is a fixed 32-byte base64 key for JOB_ENCRYPTION_KEY in tests.
const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func ptr(s string) *string { return &s }

func TestStartAPIReportsABadConfiguration(t *testing.T) {
	t.Parallel()
	_, err := StartAPIProcess(map[string]string{"PREFECT_API_URL": "not a url"})
	if err == nil || !strings.Contains(err.Error(), "PREFECT_API_URL") {
		t.Errorf("error = %v, want one naming PREFECT_API_URL", err)
	}
}

// TestPrefectOnPostgres proves the PostgreSQL backend end to end: a private
// cluster, a Prefect server migrated onto it, and one real write and read.
// Skipped with -short (it starts both servers, about a minute).
func TestPrefectOnPostgres(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL and a Prefect server")
	}
	s, err := StartPrefectPostgres()
	if err != nil {
		t.Fatal(err)
	}
	db := s.DB
	defer func() {
		s.Stop()
		if conn, err := net.DialTimeout("tcp", db.Addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("postgres still answers on %s after Stop", db.Addr)
		}
	}()
	if !strings.HasPrefix(db.PrefectURL(), "postgresql+asyncpg://postgres@127.0.0.1:") {
		t.Errorf("PrefectURL = %q", db.PrefectURL())
	}
	if s.Version != PrefectVersion() {
		t.Errorf("version = %q, want %q", s.Version, PrefectVersion())
	}
	name := Unique("pg-flow")
	var created struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	s.Do(t, "POST", "/flows/", map[string]any{"name": name}, &created)
	var got struct {
		Name string `json:"name"`
	}
	s.Do(t, "GET", "/flows/"+created.ID, nil, &got)
	if got.Name != name {
		t.Errorf("flow read back = %q, want %q", got.Name, name)
	}
	// The flow really is in PostgreSQL.
	out, err := db.Query("SELECT count(*) FROM flow WHERE name = '" + name + "'")
	if err != nil || out != "1" {
		t.Errorf("flow rows in postgres = %q, %v; want 1", out, err)
	}
}
