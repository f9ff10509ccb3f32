package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// readsAPI is the api's real handler over a fake Prefect, with the given
// PROXY_API_TOKEN / ADMIN_TOKEN.
func readsAPI(t *testing.T, proxyToken string) (*prefecttest.Server, http.Handler) {
	t.Helper()
	fake := prefecttest.New(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	svc := proxy.New(fake.Client(), log)
	svc.DefaultWorkPool = "default-agent-pool"
	return fake, specChecked(t, New(Deps{Config: config.Config{ProxyAPIToken: proxyToken}, Log: log, Proxy: svc}))
}

// serveReads sends one request to h and returns the status and the raw body.
func serveReads(t *testing.T, h http.Handler, method, path, body string, header ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// assertJSON compares two JSON texts by value.
func assertJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("body\n got %s\nwant %s", gb, wb)
	}
}

func blockDoc(id, name string, data map[string]any) map[string]any {
	return map[string]any{"id": id, "name": name, "data": data, "block_type_name": "x"}
}

const notFoundDoc = `{"detail":"Block document not found"}`

func TestAirbyteServerBlockRoutes(t *testing.T) {
	t.Parallel()
	const byName = "GET /block_types/slug/airbyte-server/block_documents/name/{name}"
	full := map[string]any{
		"server_host": "airbyte.internal", "server_port": 8001, "api_version": "v1",
		"username": "dalgo", "password": "s3cr3t", "use_ssl": false,
	}
	token := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name       string
		path       string
		prefect    func(w http.ResponseWriter, r *http.Request)
		wantStatus int
		wantBody   string
	}{
		{
			name:       "route 2: existing block gives its id",
			path:       "/proxy/blocks/airbyte/server/org-abc",
			prefect:    jsonHandler(200, blockDoc("11111111-1111-1111-1111-111111111111", "org-abc", full)),
			wantStatus: 200, wantBody: `{"block_id":"11111111-1111-1111-1111-111111111111"}`,
		},
		{
			name:       "route 2: missing block is 200 with a null id (Django creates it)",
			path:       "/proxy/blocks/airbyte/server/org-abc",
			prefect:    rawHandler(404, notFoundDoc),
			wantStatus: 200, wantBody: `{"block_id":null}`,
		},
		{
			name:       "route 2: trailing slash reaches the same route",
			path:       "/proxy/blocks/airbyte/server/org-abc/",
			prefect:    rawHandler(404, notFoundDoc),
			wantStatus: 200, wantBody: `{"block_id":null}`,
		},
		{
			name:       "route 2: Prefect down is 503 with a detail",
			path:       "/proxy/blocks/airbyte/server/org-abc",
			prefect:    rawHandler(503, `{"detail":"database is locked"}`),
			wantStatus: 503, wantBody: `{"detail":"Prefect is unavailable (503)"}`,
		},
		{
			name:       "route 3: block config with the basic-auth token",
			path:       "/proxy/blocks/airbyte/server/block/org-abc",
			prefect:    jsonHandler(200, blockDoc("1", "org-abc", full)),
			wantStatus: 200,
			wantBody:   `{"host":"airbyte.internal","port":8001,"version":"v1","token":"` + token("dalgo:s3cr3t") + `"}`,
		},
		{
			name: "route 3: absent username/password take the block defaults; a string port is coerced",
			path: "/proxy/blocks/airbyte/server/block/org-abc",
			prefect: jsonHandler(200, blockDoc("1", "org-abc", map[string]any{
				"server_host": "h", "server_port": "8000", "api_version": "v1", "use_ssl": false,
			})),
			wantStatus: 200,
			wantBody:   `{"host":"h","port":8000,"version":"v1","token":"` + token("airbyte:password") + `"}`,
		},
		{
			name:       "route 3: missing block is 404 block not found",
			path:       "/proxy/blocks/airbyte/server/block/org-abc",
			prefect:    rawHandler(404, notFoundDoc),
			wantStatus: 404, wantBody: `{"detail":"block not found"}`,
		},
		{
			name:       "route 3: a block that is not an airbyte server is 502, secrets not echoed",
			path:       "/proxy/blocks/airbyte/server/block/org-abc",
			prefect:    jsonHandler(200, blockDoc("1", "org-abc", map[string]any{"server_port": "eighty", "password": "s3cr3t"})),
			wantStatus: 502, wantBody: `{"detail":"airbyte server block \"org-abc\" does not match the airbyte-server schema"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, api := readsAPI(t, "")
			fake.Handle(byName, tc.prefect)
			status, body := serveReads(t, api, "GET", tc.path, "")
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, body)
			}
			assertJSON(t, body, tc.wantBody)
			calls := fake.Calls()
			if len(calls) == 0 || calls[0].Query.Get("include_secrets") != "true" {
				t.Errorf("expected a read with include_secrets=true, got %+v", calls)
			}
			if strings.Contains(body, "s3cr3t") && !strings.Contains(tc.wantBody, token("dalgo:s3cr3t")) {
				t.Errorf("secret leaked: %s", body)
			}
		})
	}
}

func TestAirbyteServerBlockIDUsesTheNameAsGiven(t *testing.T) {
	t.Parallel()
	fake, api := readsAPI(t, "")
	fake.JSON("GET /block_types/slug/airbyte-server/block_documents/name/{name}", 404,
		map[string]string{"detail": "Block document not found"})
	serveReads(t, api, "GET", "/proxy/blocks/airbyte/server/Org_ABC", "")
	calls := fake.Calls()
	if len(calls) != 1 || calls[0].Path != "/api/block_types/slug/airbyte-server/block_documents/name/Org_ABC" {
		t.Fatalf("calls %+v", calls)
	}
}

func TestSecretBlockRoutes(t *testing.T) {
	t.Parallel()
	const byName = "GET /block_types/slug/secret/block_documents/name/{name}"
	secretDoc := func(value any) func(http.ResponseWriter, *http.Request) {
		return jsonHandler(200, blockDoc("22222222-2222-2222-2222-222222222222", "x", map[string]any{"value": value}))
	}
	bearer := []string{"Authorization", "Bearer tok"}
	cases := []struct {
		name       string
		token      string // PROXY_API_TOKEN
		header     []string
		path       string
		prefect    func(http.ResponseWriter, *http.Request)
		wantPath   string // the Prefect path read, "" for no call
		wantStatus int
		wantBody   string
	}{
		{
			name: "route 8: block id and the cleaned name", path: "/proxy/blocks/secret/My_Org.Git-PAT",
			prefect: secretDoc("ghp_x"), wantPath: "/api/block_types/slug/secret/block_documents/name/myorggit-pat",
			wantStatus: 200, wantBody: `{"block_id":"22222222-2222-2222-2222-222222222222","block_name":"myorggit-pat"}`,
		},
		{
			name: "route 8: missing block is 404 naming the cleaned name", path: "/proxy/blocks/secret/My_Org",
			prefect: rawHandler(404, notFoundDoc), wantPath: "/api/block_types/slug/secret/block_documents/name/myorg",
			wantStatus: 404, wantBody: `{"detail":"no secret block named myorg"}`,
		},
		{
			name: "route 8: a name that cleans to nothing is 404 without a Prefect call", path: "/proxy/blocks/secret/___",
			wantStatus: 404, wantBody: `{"detail":"no secret block named "}`,
		},
		{
			name: "route 8: Prefect rejecting the read is the route's 400", path: "/proxy/blocks/secret/abc",
			prefect: rawHandler(422, `{"detail":"bad"}`), wantPath: "/api/block_types/slug/secret/block_documents/name/abc",
			wantStatus: 400, wantBody: `{"detail":"failed to fetch secret block"}`,
		},
		{
			name: "route 7: off without PROXY_API_TOKEN", path: "/proxy/blocks/secret/abc/contents",
			prefect: secretDoc("hunter2"), wantStatus: 403,
			wantBody: `{"detail":"secret block contents are not served unless PROXY_API_TOKEN is set and presented as a bearer token"}`,
		},
		{
			name: "route 7: token set but not presented is 401", token: "tok", path: "/proxy/blocks/secret/abc/contents",
			prefect: secretDoc("hunter2"), wantStatus: 401, wantBody: `{"detail":"missing or invalid bearer token"}`,
		},
		{
			name: "route 7: a plain string value", token: "tok", header: bearer, path: "/proxy/blocks/secret/abc/contents",
			prefect: secretDoc("hunter2"), wantPath: "/api/block_types/slug/secret/block_documents/name/abc",
			wantStatus: 200, wantBody: `"hunter2"`,
		},
		{
			name: "route 7: a JSON string value comes back parsed (Secret.get)", token: "tok", header: bearer,
			path: "/proxy/blocks/secret/abc/contents", prefect: secretDoc(`{"wtype": "postgres", "port": 5432}`),
			wantPath:   "/api/block_types/slug/secret/block_documents/name/abc",
			wantStatus: 200, wantBody: `{"wtype":"postgres","port":5432}`,
		},
		{
			name: "route 7: a stored JSON object passes through", token: "tok", header: bearer,
			path: "/proxy/blocks/secret/ABC/contents", prefect: secretDoc(map[string]any{"k": []int{1}}),
			wantPath:   "/api/block_types/slug/secret/block_documents/name/abc",
			wantStatus: 200, wantBody: `{"k":[1]}`,
		},
		{
			name: "route 7: missing block is 404", token: "tok", header: bearer, path: "/proxy/blocks/secret/abc/contents",
			prefect: rawHandler(404, notFoundDoc), wantPath: "/api/block_types/slug/secret/block_documents/name/abc",
			wantStatus: 404, wantBody: `{"detail":"no secret block named abc"}`,
		},
		{
			name: "route 7: Prefect rejecting the read is the route's 400", token: "tok", header: bearer,
			path: "/proxy/blocks/secret/abc/contents", prefect: rawHandler(400, `{"detail":"x"}`),
			wantPath:   "/api/block_types/slug/secret/block_documents/name/abc",
			wantStatus: 400, wantBody: `{"detail":"failed to fetch secret block contents"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, api := readsAPI(t, tc.token)
			if tc.prefect != nil {
				fake.Handle(byName, tc.prefect)
			}
			status, body := serveReads(t, api, "GET", tc.path, "", tc.header...)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, body)
			}
			assertJSON(t, body, tc.wantBody)
			calls := fake.Calls()
			if tc.wantPath == "" {
				if len(calls) != 0 {
					t.Fatalf("expected no Prefect call, got %+v", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].Path != tc.wantPath || calls[0].Query.Get("include_secrets") != "true" {
				t.Fatalf("calls %+v, want one GET %s?include_secrets=true", calls, tc.wantPath)
			}
		})
	}
}

func jsonHandler(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { prefecttest.Write(w, status, v) }
}

func rawHandler(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// Secret values (a secret block's value, an Airbyte password) never reach the
// log, whatever the answer.
func TestSecretsStayOutOfLogs(t *testing.T) {
	t.Parallel()
	const secret = "pw-9f8e7d6c"
	fake := prefecttest.New(t)
	var logs strings.Builder
	var mu sync.Mutex
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	log.SetOutput(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }))
	api := specChecked(t, New(Deps{Config: config.Config{ProxyAPIToken: "tok"}, Log: log, Proxy: proxy.New(fake.Client(), log)}))
	fake.JSON("GET /block_types/slug/secret/block_documents/name/ok", 200, blockDoc("1", "ok", map[string]any{"value": secret}))
	fake.JSON("GET /block_types/slug/secret/block_documents/name/bad", 422, map[string]any{
		"exception_detail": []any{map[string]any{"input": secret}}, "request_body": map[string]any{"value": secret}})
	fake.JSON("GET /block_types/slug/airbyte-server/block_documents/name/ok", 200,
		blockDoc("2", "ok", map[string]any{"server_host": "h", "server_port": 1, "password": secret}))
	fake.JSON("GET /block_types/slug/airbyte-server/block_documents/name/odd", 200,
		blockDoc("3", "odd", map[string]any{"server_port": []int{1}, "password": secret}))
	for _, path := range []string{
		"/proxy/blocks/secret/ok/contents", "/proxy/blocks/secret/bad/contents", "/proxy/blocks/secret/bad",
		"/proxy/blocks/airbyte/server/block/ok", "/proxy/blocks/airbyte/server/block/odd",
	} {
		status, body := serveReads(t, api, "GET", path, "", "Authorization", "Bearer tok")
		if status != 200 && strings.Contains(body, secret) {
			t.Errorf("%s: error body carries the secret: %s", path, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() == 0 {
		t.Fatal("no access log written")
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the log carries the secret:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
