package httpapi

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

type openAPIForTest struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

func TestOpenAPIAndDocsAreServed(t *testing.T) {
	t.Parallel()
	_, api := readsAPI(t, "tok") // the docs are open even with a token set
	status, body := serveReads(t, api, "GET", "/openapi.json", "")
	if status != 200 {
		t.Fatalf("/openapi.json: %d", status)
	}
	var doc openAPIForTest
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/openapi.json is not JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) == 0 {
		t.Fatalf("openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	status, body = serveReads(t, api, "GET", "/docs", "")
	if status != 200 || !strings.Contains(body, `src="/docs/assets/swagger-ui-bundle.js"`) {
		t.Fatalf("/docs: %d %s", status, body)
	}
	// Nothing on the page comes from another origin.
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).FindString(body); m != "" {
		t.Errorf("/docs loads %s from another origin", m)
	}
}

func TestDocsAssetsComeFromTheBinary(t *testing.T) {
	// Not parallel: it runs before the parallel tests, whose fake Prefect
	// timeouts a burst of requests on a busy machine would eat into.
	_, api := readsAPI(t, "tok")
	tests := []struct {
		path        string
		status      int
		contentType string
		contains    string
	}{
		{"/docs/assets/swagger-ui-bundle.js", 200, "text/javascript", "SwaggerUIBundle"},
		{"/docs/assets/swagger-ui.css", 200, "text/css", ".swagger-ui"},
		{"/docs/assets/docs-init.js", 200, "text/javascript", `url: "/openapi.json"`},
		{"/docs/assets/favicon-32x32.png", 200, "image/png", "PNG"},
		{"/docs/assets/index.html", 404, "application/json", "Not Found"},             // the distribution's own page is not served
		{"/docs/assets/swagger-initializer.js", 404, "application/json", "Not Found"}, // it points at the petstore
		{"/docs/assets/../openapi.json", 404, "application/json", "Not Found"},
		{"/docs/assets/nope.js", 404, "application/json", "Not Found"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, req)
			if rec.Code != tc.status || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.contentType) ||
				!strings.Contains(rec.Body.String(), tc.contains) {
				t.Fatalf("%d %q %.200s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
			}
			if tc.status == 200 && !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("no Content-Security-Policy: %v", rec.Header())
			}
		})
	}
}

// docPathKey normalises a path for comparison: {param} and :param become
// {}, and the trailing slash goes (both forms are served).
func docPathKey(method, path string) string {
	path = regexp.MustCompile(`\{[^}]+\}|:[^/]+|\*[^/]*`).ReplaceAllString(path, "{}")
	return strings.ToUpper(method) + " " + strings.TrimSuffix(path, "/")
}

// Every Django-facing route the router serves must be in /openapi.json, and
// every route the Python proxy serves must be in the document.
func TestOpenAPICoversTheRoutes(t *testing.T) {
	t.Parallel()
	var doc openAPIForTest
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[docPathKey(method, path)] = true
		}
	}

	log := logrus.New()
	log.SetOutput(io.Discard)
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	addRoutes(r, Deps{Config: config.Config{}, Log: log, Proxy: proxy.New(prefecttest.New(t).Client(), log)})
	for _, rt := range r.Routes() {
		if strings.HasPrefix(rt.Path, "/monitoring") {
			continue // asynqmon's UI (all methods, its own sub-pages); documented as GET /monitoring/
		}
		if !documented[docPathKey(rt.Method, rt.Path)] {
			t.Errorf("route %s %s is served but not in openapi.json", rt.Method, rt.Path)
		}
	}

	// The Python proxy's routes 2–37 (route 1, /sentry-debug, is dropped).
	python := []string{
		"GET /proxy/blocks/airbyte/server/{}", "GET /proxy/blocks/airbyte/server/block/{}",
		"POST /proxy/blocks/airbyte/server", "PUT /proxy/blocks/airbyte/server", "PUT /proxy/blocks/airbyte/connection",
		"GET /proxy/blocks/secret/{}/contents", "GET /proxy/blocks/secret/{}", "POST /proxy/blocks/secret",
		"PUT /proxy/blocks/secret", "DELETE /delete-a-block/{}", "POST /proxy/v1/flows/dbtcore/run",
		"POST /proxy/flows/shell/run", "POST /proxy/v1/deployments", "PUT /proxy/v1/deployments/{}",
		"PATCH /proxy/v1/deployments/{}/entrypoint", "GET /proxy/v1/deployments/get_scheduled_flow_runs",
		"POST /proxy/flow_run", "GET /proxy/flow_runs", "POST /proxy/flow_runs/late", "GET /proxy/flow_runs/{}",
		"GET /proxy/flow_runs/{}/poll", "DELETE /proxy/flow_runs/{}", "POST /proxy/flow_runs/{}/retry",
		"POST /proxy/deployments/filter", "GET /proxy/flow_runs/logs/{}", "GET /proxy/flow_runs/v1/logs/{}",
		"GET /proxy/flow_runs/graph/{}", "GET /proxy/deployments/{}", "DELETE /proxy/deployments/{}",
		"POST /proxy/deployments/{}/flow_run", "POST /proxy/deployments/{}/flow_run/schedule",
		"POST /proxy/deployments/{}/set_schedule/{}", "GET /proxy/prefect/version",
		"GET /proxy/flow_runs/long-running/{}", "POST /proxy/flow_runs/{}/set_state", "POST /proxy/workers/filter",
		"GET /jobs/{}", "POST /webhooks/v1/notification", "GET /openapi.json", "GET /docs", "GET /livez", "GET /readyz",
	}
	for _, k := range python {
		if !documented[k] {
			t.Errorf("%s is not in openapi.json", k)
		}
	}
}
