package httpapi

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

func TestProxyTokenGuard(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		token      string
		auth       string
		wantStatus int
	}{
		{name: "no token configured: open", token: "", auth: "", wantStatus: 200},
		{name: "no token configured: a header is ignored", token: "", auth: "Bearer whatever", wantStatus: 200},
		{name: "token configured, none sent: 401", token: "t0k", auth: "", wantStatus: 401},
		{name: "wrong token: 401", token: "t0k", auth: "Bearer t0x", wantStatus: 401},
		{name: "prefix of the token: 401", token: "t0k", auth: "Bearer t0", wantStatus: 401},
		{name: "basic scheme is not accepted: 401", token: "t0k", auth: "Basic t0k", wantStatus: 401},
		{name: "right token: 200", token: "t0k", auth: "Bearer t0k", wantStatus: 200},
		{name: "scheme is case-insensitive", token: "t0k", auth: "bearer t0k", wantStatus: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, api := readsAPI(t, tc.token)
			fake.JSON("GET /admin/version", 200, "3.6.29")
			status, body := serveReads(t, api, "GET", "/proxy/prefect/version", "", "Authorization", tc.auth)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, body)
			}
			if status == 401 {
				assertJSON(t, body, `{"detail":"missing or invalid bearer token"}`)
				if n := len(fake.Calls()); n != 0 {
					t.Errorf("an unauthorized request reached Prefect %d times", n)
				}
			}
		})
	}
}

func TestTokenGuardCoversMyRoutes(t *testing.T) {
	t.Parallel()
	_, api := readsAPI(t, "t0k")
	for _, r := range []struct{ method, path string }{
		{"GET", "/proxy/blocks/airbyte/server/x"},
		{"GET", "/proxy/blocks/airbyte/server/block/x"},
		{"GET", "/proxy/blocks/secret/x"},
		{"GET", "/proxy/blocks/secret/x/contents"},
		{"POST", "/proxy/deployments/filter"},
		{"GET", "/proxy/deployments/x"},
		{"POST", "/proxy/workers/filter/"},
		{"POST", "/proxy/v1/flows/dbtcore/run/"},
	} {
		if status, body := serveReads(t, api, r.method, r.path, `{}`); status != 401 {
			t.Errorf("%s %s: %d %s, want 401", r.method, r.path, status, body)
		}
	}
}

func TestAdminOnly(t *testing.T) {
	t.Parallel()
	newRouter := func(token string) http.Handler {
		gin.SetMode(gin.ReleaseMode)
		r := gin.New()
		r.GET("/monitoring", adminOnly(token), func(c *gin.Context) { c.String(200, "ok") })
		return r
	}
	cases := []struct {
		name       string
		token      string
		setup      func(*http.Request)
		wantStatus int
	}{
		{name: "off without ADMIN_TOKEN", token: "", setup: func(r *http.Request) { r.Header.Set("Authorization", "Bearer x") }, wantStatus: 404},
		{name: "nothing presented", token: "adm", setup: func(*http.Request) {}, wantStatus: 401},
		{name: "wrong bearer", token: "adm", setup: func(r *http.Request) { r.Header.Set("Authorization", "Bearer adn") }, wantStatus: 401},
		{name: "bearer", token: "adm", setup: func(r *http.Request) { r.Header.Set("Authorization", "Bearer adm") }, wantStatus: 200},
		{name: "basic auth password (a browser)", token: "adm", setup: func(r *http.Request) { r.SetBasicAuth("admin", "adm") }, wantStatus: 200},
		{name: "wrong basic password", token: "adm", setup: func(r *http.Request) { r.SetBasicAuth("admin", "nope") }, wantStatus: 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", "/monitoring", nil)
			tc.setup(req)
			rec := httptest.NewRecorder()
			newRouter(tc.token).ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestTokenGuardCoversEveryDjangoRoute walks the router itself, so a route
// added later cannot be left open: with PROXY_API_TOKEN set, every /proxy,
// /jobs and /delete-a-block route answers 401 without the bearer token.
func TestTokenGuardCoversEveryDjangoRoute(t *testing.T) {
	t.Parallel()
	fake, api := readsAPI(t, "t0k")
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	addRoutes(r, Deps{Config: config.Config{ProxyAPIToken: "t0k"}})
	guarded := 0
	for _, rt := range r.Routes() {
		if !strings.HasPrefix(rt.Path, "/proxy/") && !strings.HasPrefix(rt.Path, "/jobs/") &&
			!strings.HasPrefix(rt.Path, "/delete-a-block/") {
			continue
		}
		guarded++
		path := regexp.MustCompile(`:[a-z_]+`).ReplaceAllString(rt.Path, "x")
		if status, body := serveReads(t, api, rt.Method, path, `{}`); status != 401 {
			t.Errorf("%s %s: %d %s, want 401", rt.Method, path, status, body)
		}
	}
	if guarded < 30 {
		t.Fatalf("only %d Django-facing routes found", guarded)
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("unauthorized requests reached Prefect %d times", n)
	}
}
