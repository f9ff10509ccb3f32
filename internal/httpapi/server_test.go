package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// newBareServer is the middleware stack with a few test routes, no Prefect.
func newBareServer(t *testing.T) (http.Handler, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	log.SetFormatter(&logrus.JSONFormatter{})
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.RedirectTrailingSlash = false
	r.Use(requestID(), recoverJSON(log), accessLog(log, NewMetrics(prometheus.NewRegistry())))
	r.NoRoute(func(c *gin.Context) { writeError(c, apperr.New(apperr.NotFound, "Not Found")) })
	r.GET("/panic", h(func(*gin.Context) (any, error) { panic("boom: secret-ish internals") }))
	r.GET("/null", h(func(*gin.Context) (any, error) { return nil, nil }))
	r.POST("/things", h(func(*gin.Context) (any, error) { return gin.H{"ok": 1}, nil }))
	r.GET("/upstream", h(func(*gin.Context) (any, error) {
		return nil, apperr.New(apperr.Upstream, "Prefect is unreachable")
	}))
	r.GET("/job", h(func(*gin.Context) (any, error) {
		return nil, &apperr.Error{Code: apperr.Timeout, Message: "still running", Extra: map[string]any{"job_id": "j1"}}
	}))
	r.GET("/invalid", h(func(*gin.Context) (any, error) {
		return nil, apperr.Validation(apperr.Field("missing", "Field required", "query", "deployment_id"))
	}))
	return stripTrailingSlash(r), &logs
}

func TestMiddlewareAndErrorShapes(t *testing.T) {
	t.Parallel()
	srv, logs := newBareServer(t)
	cases := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{"panic becomes a JSON 500 without internals", "GET", "/panic", 500, `{"detail":"internal error"}`},
		{"nil body is JSON null", "GET", "/null", 200, `null`},
		{"trailing slash reaches the same route, no redirect", "POST", "/things/", 200, `{"ok":1}`},
		{"both slash forms", "POST", "/things", 200, `{"ok":1}`},
		{"unknown path is a JSON 404", "GET", "/nowhere", 404, `{"detail":"Not Found"}`},
		{"upstream fault is 502 with detail", "GET", "/upstream", 502, `{"detail":"Prefect is unreachable"}`},
		{"extra keys sit next to detail", "GET", "/job", 504, `{"detail":"still running","job_id":"j1"}`},
		{"validation is FastAPI's list shape", "GET", "/invalid", 422,
			`{"detail":[{"loc":["query","deployment_id"],"msg":"Field required","type":"missing"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.Header.Set("x-ddp-org", "acme")
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if got := strings.TrimSpace(rec.Body.String()); !jsonEqual(t, got, tc.wantBody) {
				t.Errorf("body %s, want %s", got, tc.wantBody)
			}
			if rec.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
		})
	}
	if strings.Contains(logs.String(), `"org":"acme"`) == false {
		t.Errorf("access log must carry org from x-ddp-org:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"route":"/things"`) {
		t.Errorf("access log must carry the route template:\n%s", logs.String())
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		return false
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("bad want JSON %s", b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// A known path with the wrong method is FastAPI's 405 {"detail": "Method Not Allowed"}.
func TestWrongMethodIs405(t *testing.T) {
	t.Parallel()
	_, h := readsAPI(t, "")
	code, body := serveReads(t, h, "DELETE", "/proxy/prefect/version", "")
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("status %d, want 405: %s", code, body)
	}
	assertJSON(t, body, `{"detail":"Method Not Allowed"}`)
}

// A huge x-ddp-org is cut in the access log, whatever the status: the log
// line stays small and says how long the value was.
func TestAccessLogCapsHeaderValues(t *testing.T) {
	t.Parallel()
	srv, logs := newBareServer(t)
	huge := strings.Repeat("é", 450_000) // 900 000 bytes; a cut inside a rune must not split it
	for _, path := range []string{"/null", "/nowhere", "/upstream"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("x-ddp-org", huge)
		srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 access log lines, got %d", len(lines))
	}
	for _, line := range lines {
		var entry struct {
			Org string `json:"org"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %v", err)
		}
		if len(line) > 1024 {
			t.Errorf("log line is %d bytes, want it small", len(line))
		}
		if !strings.HasPrefix(entry.Org, "éé") || !strings.HasSuffix(entry.Org, "…[truncated, 900000 bytes]") {
			t.Errorf("org logged as %.80q…, want a prefix and the truncation marker", entry.Org)
		}
		if prefix := strings.TrimSuffix(entry.Org, "…[truncated, 900000 bytes]"); len(prefix) > maxLoggedValue || !utf8.ValidString(prefix) {
			t.Errorf("kept %d bytes (valid UTF-8: %t), want at most %d", len(prefix), utf8.ValidString(prefix), maxLoggedValue)
		}
	}
}

func TestCapLogValue(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in, want string }{
		{"short value unchanged", "acme", "acme"},
		{"exactly the cap unchanged", strings.Repeat("a", maxLoggedValue), strings.Repeat("a", maxLoggedValue)},
		{"one byte over is cut", strings.Repeat("a", maxLoggedValue+1),
			strings.Repeat("a", maxLoggedValue) + "…[truncated, 257 bytes]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := capLogValue(tc.in); got != tc.want {
				t.Errorf("capLogValue = %q, want %q", got, tc.want)
			}
		})
	}
}
