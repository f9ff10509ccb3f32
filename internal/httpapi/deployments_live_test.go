package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestLiveReads checks routes 2, 3, 7, 8, 25, 29 and 37 through the real
// handler against a real Prefect server: the one `make test` shares
// (PREFECT_TEST_API_URL), or one testenv starts. -short (make unit) skips it.
func TestLiveReads(t *testing.T) {
	pf := testenv.Prefect(t)
	u, err := url.Parse(pf.URL)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	svc := proxy.New(prefect.New(prefect.Config{BaseURL: u, Timeout: 10 * time.Second}), log)
	pool := testenv.Unique("pool")
	svc.DefaultWorkPool = pool
	api := specChecked(t, New(Deps{Config: config.Config{ProxyAPIToken: "live-tok"}, Log: log, Proxy: svc}))
	auth := []string{"Authorization", "Bearer live-tok"}
	get := func(path string) (int, string) { return serveReads(t, api, "GET", path, "", auth...) }
	post := func(path, body string) (int, string) { return serveReads(t, api, "POST", path, body, auth...) }

	t.Run("secret blocks", func(t *testing.T) {
		name := testenv.Unique("sec")
		id := pf.CreateSecretBlock(t, name, `{"wtype": "postgres", "port": 5432}`)
		plain := testenv.Unique("sec")
		pf.CreateSecretBlock(t, plain, "ghp_plain")

		status, body := get("/proxy/blocks/secret/" + strings.ToUpper(name) + "_")
		if status != 200 {
			t.Fatalf("route 8: %d %s", status, body)
		}
		assertJSON(t, body, fmt.Sprintf(`{"block_id":%q,"block_name":%q}`, id, name))
		status, body = get("/proxy/blocks/secret/" + name + "/contents")
		if status != 200 {
			t.Fatalf("route 7: %d %s", status, body)
		}
		assertJSON(t, body, `{"wtype":"postgres","port":5432}`)
		_, body = get("/proxy/blocks/secret/" + plain + "/contents")
		assertJSON(t, body, `"ghp_plain"`)
		status, body = get("/proxy/blocks/secret/" + name + "-missing")
		if status != 404 {
			t.Fatalf("route 8 missing: %d %s", status, body)
		}
		assertJSON(t, body, fmt.Sprintf(`{"detail":"no secret block named %s-missing"}`, name))
	})

	t.Run("airbyte server blocks", func(t *testing.T) {
		ensureAirbyteServerType(t, pf)
		name := testenv.Unique("abs")
		id := pf.CreateBlock(t, proxy.AirbyteServerSlug, name, map[string]any{
			"username": "dalgo", "password": "pw", "server_host": "airbyte.local",
			"server_port": 8001, "api_version": "v1", "use_ssl": false,
		})
		status, body := get("/proxy/blocks/airbyte/server/" + name)
		if status != 200 {
			t.Fatalf("route 2: %d %s", status, body)
		}
		assertJSON(t, body, fmt.Sprintf(`{"block_id":%q}`, id))
		_, body = get("/proxy/blocks/airbyte/server/" + name + "-missing")
		assertJSON(t, body, `{"block_id":null}`)
		status, body = get("/proxy/blocks/airbyte/server/block/" + name)
		if status != 200 {
			t.Fatalf("route 3: %d %s", status, body)
		}
		tok := base64.StdEncoding.EncodeToString([]byte("dalgo:pw"))
		assertJSON(t, body, `{"host":"airbyte.local","port":8001,"version":"v1","token":"`+tok+`"}`)
		status, body = get("/proxy/blocks/airbyte/server/block/" + name + "-missing")
		if status != 404 {
			t.Fatalf("route 3 missing: %d %s", status, body)
		}
	})

	t.Run("deployments", func(t *testing.T) {
		org := testenv.Unique("org")
		params := map[string]any{"config": map[string]any{"tasks": []any{}, "org_slug": org}}
		a := pf.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{org}, Parameters: params,
			Cron: "0 1 * * *", ScheduleInactive: true, Entrypoint: "proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"})
		b := pf.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{org, "x"}, Parameters: params})
		other := pf.CreateDeployment(t, testenv.DeploymentSpec{Tags: []string{"someone-else"}})

		status, body := get("/proxy/deployments/" + a.ID)
		if status != 200 {
			t.Fatalf("route 29: %d %s", status, body)
		}
		paramsJSON, _ := json.Marshal(params)
		assertJSON(t, body, fmt.Sprintf(`{"name":%q,"deploymentId":%q,"tags":[%q],"cron":"0 1 * * *","isScheduleActive":false,`+
			`"parameters":%s,"entrypoint":"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"}`, a.Name, a.ID, org, paramsJSON))
		status, body = get("/proxy/deployments/00000000-0000-0000-0000-000000000000")
		if status != 400 {
			t.Fatalf("route 29 missing: %d %s", status, body)
		}
		status, body = post("/proxy/deployments/filter",
			fmt.Sprintf(`{"org_slug":%q,"deployment_ids":[%q,%q,%q]}`, org, a.ID, b.ID, other.ID))
		if status != 200 {
			t.Fatalf("route 25: %d %s", status, body)
		}
		var out struct{ Deployments []DeploymentJSONForTest }
		_ = json.Unmarshal([]byte(body), &out)
		got := map[string]bool{}
		for _, d := range out.Deployments {
			got[d.DeploymentID] = true
		}
		if len(out.Deployments) != 2 || !got[a.ID] || !got[b.ID] {
			t.Fatalf("route 25: %s", body)
		}
		status, body = post("/proxy/deployments/filter", fmt.Sprintf(`{"org_slug":%q,"deployment_ids":["nope"]}`, org))
		if status != 400 {
			t.Fatalf("route 25 bad id: %d %s", status, body)
		}
	})

	t.Run("workers", func(t *testing.T) {
		pf.CreateWorkPool(t, pool, "ddp")
		pf.WorkerHeartbeat(t, pool, "w1")
		pf.WorkerHeartbeat(t, pool, "w2")
		status, body := post("/proxy/workers/filter/", `{"work_queue_names":["ddp"],"work_pool_names":[]}`)
		if status != 200 {
			t.Fatalf("route 37: %d %s", status, body)
		}
		assertJSON(t, body, `{"count":2}`)
		_, body = post("/proxy/workers/filter/", fmt.Sprintf(`{"work_pool_names":[%q,%q]}`, pool, testenv.Unique("ghost")))
		assertJSON(t, body, `{"count":2}`)
		_, body = post("/proxy/workers/filter/", fmt.Sprintf(`{"work_pool_names":[%q],"status":"OFFLINE"}`, pool))
		assertJSON(t, body, `{"count":0}`)
	})
}

// DeploymentJSONForTest is the part of DeploymentJSON the live test reads.
type DeploymentJSONForTest struct {
	DeploymentID string `json:"deploymentId"`
}

// ensureAirbyteServerType registers a minimal airbyte-server block type and
// schema when the server lacks them (a fresh server has no prefect-airbyte).
func ensureAirbyteServerType(t *testing.T, pf *testenv.PrefectServer) {
	t.Helper()
	var bt struct{ ID string }
	status, err := pf.Call(t.Context(), "GET", "/block_types/slug/"+proxy.AirbyteServerSlug, nil, &bt)
	if err != nil && status != http.StatusNotFound {
		t.Fatal(err)
	}
	if status == http.StatusNotFound {
		pf.Do(t, "POST", "/block_types/", map[string]any{"name": "Airbyte Server", "slug": proxy.AirbyteServerSlug}, &bt)
	}
	var schemas []any
	pf.Do(t, "POST", "/block_schemas/filter", map[string]any{
		"block_schemas": map[string]any{"block_type_id": map[string]any{"any_": []string{bt.ID}}}, "limit": 1,
	}, &schemas)
	if len(schemas) > 0 {
		return
	}
	str := func(def string) map[string]any { return map[string]any{"type": "string", "default": def} }
	pf.Do(t, "POST", "/block_schemas/", map[string]any{
		"block_type_id": bt.ID, "capabilities": []string{}, "version": "0.91",
		"fields": map[string]any{
			"title": "AirbyteServer", "type": "object", "block_type_slug": proxy.AirbyteServerSlug,
			"properties": map[string]any{
				"username": str("airbyte"), "password": map[string]any{"type": "string", "default": "password",
					"format": "password", "writeOnly": true},
				"server_host": str("localhost"), "server_port": map[string]any{"type": "integer", "default": 8000},
				"api_version": str("v1"), "use_ssl": map[string]any{"type": "boolean", "default": false},
			},
			"secret_fields": []string{"password"}, "block_schema_references": map[string]any{},
		},
	}, nil)
}
