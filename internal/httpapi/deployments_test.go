package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

// prefectDeployment is a Prefect 3.6 DeploymentResponse as the dev server
// returns it (trimmed to the keys that matter plus a few that must be ignored).
func prefectDeployment(id, name string, schedules []map[string]any) map[string]any {
	return map[string]any{
		"id": id, "name": name, "flow_id": "f", "paused": false, "schedules": schedules,
		"parameters":      map[string]any{"config": map[string]any{"tasks": []any{}, "org_slug": "org"}},
		"tags":            []string{"org"},
		"entrypoint":      "proxy/prefect_flows_runner.py:deployment_schedule_flow_v5",
		"work_pool_name":  "default-agent-pool",
		"work_queue_name": "ddp",
	}
}

func cronSchedule(cron string, active bool) map[string]any {
	return map[string]any{
		"id": "s", "deployment_id": "d", "active": active,
		"schedule": map[string]any{"cron": cron, "timezone": "UTC", "day_or": true},
	}
}

const depUUID = "13587d9e-b54a-4cdf-95c7-9c42d194fee5"

func TestGetDeployment(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		id         string
		prefect    func(http.ResponseWriter, *http.Request)
		wantStatus int
		wantBody   string
	}{
		{
			name: "scheduled deployment", id: depUUID,
			prefect:    jsonHandler(200, prefectDeployment(depUUID, "dep", []map[string]any{cronSchedule("0 1 * * *", true)})),
			wantStatus: 200,
			wantBody: `{"name":"dep","deploymentId":"` + depUUID + `","tags":["org"],"cron":"0 1 * * *","isScheduleActive":true,` +
				`"parameters":{"config":{"tasks":[],"org_slug":"org"}},"entrypoint":"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"}`,
		},
		{
			name: "unscheduled deployment has cron \"\" and an inactive schedule", id: depUUID,
			prefect:    jsonHandler(200, prefectDeployment(depUUID, "dep", []map[string]any{})),
			wantStatus: 200,
			wantBody: `{"name":"dep","deploymentId":"` + depUUID + `","tags":["org"],"cron":"","isScheduleActive":false,` +
				`"parameters":{"config":{"tasks":[],"org_slug":"org"}},"entrypoint":"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"}`,
		},
		{
			name: "interval schedule gives cron \"\" instead of failing", id: depUUID,
			prefect: jsonHandler(200, prefectDeployment(depUUID, "dep", []map[string]any{{
				"active": true, "schedule": map[string]any{"interval": 3600, "timezone": "UTC"},
			}})),
			wantStatus: 200,
			wantBody: `{"name":"dep","deploymentId":"` + depUUID + `","tags":["org"],"cron":"","isScheduleActive":true,` +
				`"parameters":{"config":{"tasks":[],"org_slug":"org"}},"entrypoint":"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"}`,
		},
		{
			name: "unknown deployment is the route's 400", id: depUUID,
			prefect:    rawHandler(404, `{"detail":"Deployment not found"}`),
			wantStatus: 400, wantBody: `{"detail":"failed to fetch deployment ` + depUUID + `"}`,
		},
		{
			name: "non-UUID id is the route's 400", id: "not-a-uuid",
			prefect:    rawHandler(404, `{"detail":"Not Found"}`),
			wantStatus: 400, wantBody: `{"detail":"failed to fetch deployment not-a-uuid"}`,
		},
		{
			name: "Prefect failing is 502", id: depUUID,
			prefect:    rawHandler(500, `{"exception_message":"Internal Server Error"}`),
			wantStatus: 502, wantBody: `{"detail":"Prefect failed (500)"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, api := readsAPI(t, "")
			fake.Handle("GET /deployments/{id}", tc.prefect)
			status, body := serveReads(t, api, "GET", "/proxy/deployments/"+tc.id, "")
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, body)
			}
			assertJSON(t, body, tc.wantBody)
			if calls := fake.Calls(); len(calls) == 0 || calls[0].Path != "/api/deployments/"+tc.id {
				t.Errorf("calls %+v", calls)
			}
		})
	}
}

func TestFilterDeployments(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		body       string
		prefect    func(http.ResponseWriter, *http.Request)
		wantCalls  int
		wantStatus int
		wantBody   string
	}{
		{
			name: "deployments of the org among the ids", body: `{"org_slug":"org","deployment_ids":["` + depUUID + `"]}`,
			prefect: jsonHandler(200, []any{
				prefectDeployment(depUUID, "dep", []map[string]any{cronSchedule("*/5 * * * *", false)}),
			}),
			wantCalls: 1, wantStatus: 200,
			wantBody: `{"deployments":[{"name":"dep","deploymentId":"` + depUUID + `","tags":["org"],"cron":"*/5 * * * *",` +
				`"isScheduleActive":false,"parameters":{"config":{"tasks":[],"org_slug":"org"}},` +
				`"entrypoint":"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"}]}`,
		},
		{
			name: "empty id list gives no deployments without a Prefect call", body: `{"org_slug":"org","deployment_ids":[]}`,
			wantStatus: 200, wantBody: `{"deployments":[]}`,
		},
		{
			name: "null deployment_ids is the Python proxy's 400", body: `{"org_slug":"org","deployment_ids":null}`,
			wantStatus: 400, wantBody: `{"detail":"failed to filter deployments"}`,
		},
		{
			name: "a non-UUID id (Prefect 422) is the route's 400", body: `{"org_slug":"org","deployment_ids":["nope"]}`,
			prefect: rawHandler(422, `{"exception_message":"Invalid request received."}`), wantCalls: 1,
			wantStatus: 400, wantBody: `{"detail":"failed to filter deployments"}`,
		},
		{
			name: "missing keys are a FastAPI 422 listing both", body: `{}`,
			wantStatus: 422,
			wantBody: `{"detail":[{"loc":["body","org_slug"],"msg":"Field required","type":"missing"},` +
				`{"loc":["body","deployment_ids"],"msg":"Field required","type":"missing"}]}`,
		},
		{
			name: "deployment_ids must be a list", body: `{"org_slug":"org","deployment_ids":"` + depUUID + `"}`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body","deployment_ids"],"msg":"Input should be a valid list","type":"list_type"}]}`,
		},
		{
			name: "ids must be strings", body: `{"org_slug":"org","deployment_ids":["a", 7]}`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body","deployment_ids",1],"msg":"Input should be a valid string","type":"string_type"}]}`,
		},
		{
			name: "org_slug must be a string", body: `{"org_slug":5,"deployment_ids":[]}`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body","org_slug"],"msg":"Input should be a valid string","type":"string_type"}]}`,
		},
		{
			name: "no body", body: ``,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body"],"msg":"Field required","type":"missing"}]}`,
		},
		{
			name: "invalid JSON", body: `{"org_slug":`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body",12],"msg":"JSON decode error","type":"json_invalid"}]}`,
		},
		{
			name: "a syntax error gives its position", body: `{"org_slug" x}`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body",12],"msg":"JSON decode error","type":"json_invalid"}]}`,
		},
		{
			name: "trailing data after the object", body: `{} x`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body",3],"msg":"JSON decode error","type":"json_invalid"}]}`,
		},
		{
			name: "a body that is not an object", body: `["org"]`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","type":"model_attributes_type"}]}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, api := readsAPI(t, "")
			if tc.prefect != nil {
				fake.Handle("POST /deployments/filter", tc.prefect)
			}
			status, body := serveReads(t, api, "POST", "/proxy/deployments/filter", tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, body)
			}
			assertJSON(t, body, tc.wantBody)
			calls := fake.CallsTo("POST", "/deployments/filter")
			if len(calls) != tc.wantCalls {
				t.Fatalf("%d Prefect calls, want %d", len(calls), tc.wantCalls)
			}
			if tc.wantCalls > 0 {
				got := calls[0].JSON(t)
				want := map[string]any{"operator": "and_", "tags": map[string]any{"all_": []any{"org"}},
					"id": map[string]any{"any_": []any{}}}
				var req struct {
					Org string `json:"org_slug"`
					IDs []any  `json:"deployment_ids"`
				}
				_ = json.Unmarshal([]byte(tc.body), &req)
				want["id"] = map[string]any{"any_": req.IDs}
				gb, _ := json.Marshal(got["deployments"])
				wb, _ := json.Marshal(want)
				if string(gb) != string(wb) {
					t.Errorf("filter %s, want %s", gb, wb)
				}
			}
		})
	}
}

// The Python proxy silently stopped at Prefect's 200-row cap; this pages.
func TestFilterDeploymentsPagesPastTheCap(t *testing.T) {
	t.Parallel()
	fake, api := readsAPI(t, "")
	const total = 450
	fake.Handle("POST /deployments/filter", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Limit, Offset int }
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Limit > 200 {
			prefecttest.Write(w, 422, map[string]string{"detail": "Invalid limit: must be less than or equal to 200."})
			return
		}
		var rows []any
		for i := req.Offset; i < total && i < req.Offset+req.Limit; i++ {
			rows = append(rows, prefectDeployment(fmt.Sprintf("00000000-0000-0000-0000-%012d", i), fmt.Sprint("d", i), nil))
		}
		prefecttest.Write(w, 200, rows)
	})
	ids := make([]string, total)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", fmt.Sprintf("00000000-0000-0000-0000-%012d", i))
	}
	status, body := serveReads(t, api, "POST", "/proxy/deployments/filter",
		`{"org_slug":"org","deployment_ids":[`+strings.Join(ids, ",")+`]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var out struct{ Deployments []map[string]any }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Deployments) != total {
		t.Fatalf("%d deployments, want %d", len(out.Deployments), total)
	}
	if n := len(fake.CallsTo("POST", "/deployments/filter")); n != 3 {
		t.Errorf("%d pages, want 3", n)
	}
}

func TestFilterWorkers(t *testing.T) {
	t.Parallel()
	// wk is a worker row: its Prefect status and how long ago it last beat.
	type wk struct {
		status string
		age    time.Duration
	}
	online := func(n int) []wk {
		out := make([]wk, n)
		for i := range out {
			out[i] = wk{"ONLINE", 10 * time.Second}
		}
		return out
	}
	cases := []struct {
		name       string
		body       string
		pools      map[string][]wk // absent pools are unknown to Prefect
		failPool   string          // a pool whose filter answers 500
		wantPools  []string        // pools asked, in any order
		wantStatus int
		wantBody   string
	}{
		{
			name: "Django's body counts the pool's online workers", body: `{"work_queue_names":["ddp"],"work_pool_names":["dalgo-pool"]}`,
			pools: map[string][]wk{"dalgo-pool": append(online(3), wk{"OFFLINE", time.Hour})}, wantPools: []string{"dalgo-pool"},
			wantStatus: 200, wantBody: `{"count":3}`,
		},
		{
			name: "no pool named counts the default pool", body: `{"work_queue_names":["ddp"]}`,
			pools: map[string][]wk{"default-agent-pool": online(2)}, wantPools: []string{"default-agent-pool"},
			wantStatus: 200, wantBody: `{"count":2}`,
		},
		{
			name: "several pools are summed, duplicates asked once", body: `{"work_pool_names":["a","b","a"]}`,
			pools: map[string][]wk{"a": online(1), "b": online(4)}, wantPools: []string{"a", "b"},
			wantStatus: 200, wantBody: `{"count":5}`,
		},
		{
			name: "an unknown pool counts 0", body: `{"work_pool_names":["ghost","a"]}`,
			pools: map[string][]wk{"a": online(1)}, wantPools: []string{"ghost", "a"},
			wantStatus: 200, wantBody: `{"count":1}`,
		},
		{
			name: "an ONLINE worker silent for over 3 heartbeats is not counted (foreman's rule)", body: `{"work_pool_names":["a"]}`,
			pools:     map[string][]wk{"a": {{"ONLINE", 10 * time.Second}, {"ONLINE", 89 * time.Second}, {"ONLINE", 5 * time.Minute}}},
			wantPools: []string{"a"}, wantStatus: 200, wantBody: `{"count":2}`,
		},
		{
			name: "status OFFLINE counts offline and stale workers", body: `{"work_pool_names":["a"],"status":"offline"}`,
			pools:     map[string][]wk{"a": {{"ONLINE", 10 * time.Second}, {"ONLINE", 5 * time.Minute}, {"OFFLINE", time.Hour}}},
			wantPools: []string{"a"}, wantStatus: 200, wantBody: `{"count":2}`,
		},
		{
			name: "more than 200 workers are all counted", body: `{"work_pool_names":["big"]}`,
			pools: map[string][]wk{"big": online(230)}, wantPools: []string{"big", "big"},
			wantStatus: 200, wantBody: `{"count":230}`,
		},
		{
			name: "Prefect failing is 502", body: `{"work_pool_names":["a"]}`, failPool: "a", wantPools: []string{"a", "a", "a"},
			wantStatus: 502, wantBody: `{"detail":"Prefect failed (500)"}`,
		},
		{
			name: "work_pool_names must be a list of strings", body: `{"work_pool_names":"a","work_queue_names":[1]}`,
			wantStatus: 422,
			wantBody: `{"detail":[{"loc":["body","work_queue_names",0],"msg":"Input should be a valid string","type":"string_type"},` +
				`{"loc":["body","work_pool_names"],"msg":"Input should be a valid list","type":"list_type"}]}`,
		},
		{
			name: "an unknown status is 422", body: `{"status":"BUSY"}`,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body","status"],"msg":"Input should be 'ONLINE' or 'OFFLINE'","type":"enum"}]}`,
		},
		{
			name: "no body is 422 as FastAPI gives", body: ``,
			wantStatus: 422, wantBody: `{"detail":[{"loc":["body"],"msg":"Field required","type":"missing"}]}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, api := readsAPI(t, "")
			fake.Handle("POST /work_pools/{pool}/workers/filter", func(w http.ResponseWriter, r *http.Request) {
				pool := r.PathValue("pool")
				if pool == tc.failPool {
					prefecttest.Write(w, 500, map[string]string{"exception_message": "Internal Server Error"})
					return
				}
				workers, ok := tc.pools[pool]
				if !ok {
					prefecttest.Write(w, 404, map[string]string{"detail": fmt.Sprintf("Work pool %q not found.", pool)})
					return
				}
				var req struct {
					Workers struct {
						Status struct {
							Any []string `json:"any_"`
						}
					}
					Limit, Offset int
				}
				_ = json.NewDecoder(r.Body).Decode(&req)
				var match []wk // Prefect applies the status filter
				for _, w := range workers {
					if len(req.Workers.Status.Any) == 0 || req.Workers.Status.Any[0] == w.status {
						match = append(match, w)
					}
				}
				rows := []any{}
				for i := req.Offset; i < len(match) && i < req.Offset+req.Limit; i++ {
					rows = append(rows, map[string]any{
						"id": fmt.Sprint("w", i), "name": fmt.Sprint("w", i), "status": match[i].status,
						"heartbeat_interval_seconds": 30,
						"last_heartbeat_time":        time.Now().Add(-match[i].age).UTC().Format(time.RFC3339Nano),
					})
				}
				prefecttest.Write(w, 200, rows)
			})
			status, body := serveReads(t, api, "POST", "/proxy/workers/filter/", tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, body)
			}
			assertJSON(t, body, tc.wantBody)
			got := map[string]int{}
			for _, c := range fake.Calls() {
				got[strings.TrimSuffix(strings.TrimPrefix(c.Path, "/api/work_pools/"), "/workers/filter")]++
			}
			want := map[string]int{}
			for _, p := range tc.wantPools {
				want[p]++
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("pools asked %v, want %v", got, want)
			}
		})
	}
}

func TestInProcessRunsAre501(t *testing.T) {
	t.Parallel()
	fake, api := readsAPI(t, "")
	for _, path := range []string{"/proxy/v1/flows/dbtcore/run/", "/proxy/flows/shell/run/", "/proxy/flows/shell/run"} {
		status, body := serveReads(t, api, "POST", path, `{"type":"shell","slug":"git-pull","commands":["rm -rf /"]}`)
		if status != 501 || !strings.Contains(body, "POST /proxy/deployments/{deployment_id}/flow_run") {
			t.Errorf("%s: %d %s", path, status, body)
		}
	}
	if len(fake.Calls()) != 0 {
		t.Errorf("a 501 route called Prefect: %+v", fake.Calls())
	}
}
