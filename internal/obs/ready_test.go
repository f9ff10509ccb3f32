package obs

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func probe(err error) func(context.Context) error {
	return func(context.Context) error { return err }
}

func TestReadyHandler(t *testing.T) {
	t.Parallel()
	down := errors.New("connection refused")
	for _, tc := range []struct {
		name       string
		checks     []Check
		query      string
		wantStatus int
		wantBody   string // substring
		wantReport string // verbose: Report.Status
	}{
		{"plain: redis up, prefect down is ready", []Check{{Name: "redis", Required: true, Probe: probe(nil)}, {Name: "prefect", Probe: probe(down)}},
			"", 200, `{"status":"ok"}`, ""},
		{"plain: redis down is 503", []Check{{Name: "redis", Required: true, Probe: probe(down)}, {Name: "prefect", Probe: probe(nil)}},
			"", 503, `not ready: connection refused`, ""},
		{"verbose: all up", []Check{{Name: "redis", Required: true, Probe: probe(nil)}, {Name: "prefect", Probe: probe(nil)}},
			"?verbose", 200, `"name":"prefect","ok":true`, "ok"},
		{"verbose: prefect down is degraded, still 200", []Check{{Name: "redis", Required: true, Probe: probe(nil)}, {Name: "prefect", Probe: probe(down)}},
			"?verbose", 200, `"name":"prefect","ok":false,"required":false`, "degraded"},
		{"verbose: redis down is 503 with the report", []Check{{Name: "redis", Required: true, Probe: probe(down)}, {Name: "django", Probe: probe(nil)}},
			"?verbose=1", 503, `"error":"connection refused"`, "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			ReadyHandler(tc.checks).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz"+tc.query, nil))
			if rec.Code != tc.wantStatus || !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Fatalf("got %d %s, want %d containing %s", rec.Code, rec.Body, tc.wantStatus, tc.wantBody)
			}
			if tc.wantReport == "" {
				return
			}
			var rep Report
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Status != tc.wantReport || len(rep.Checks) != len(tc.checks) {
				t.Fatalf("report %+v, want status %s and %d checks", rep, tc.wantReport, len(tc.checks))
			}
		})
	}
}

// TestChecksAgainstRealDependencies probes a real redis-server, an HTTP
// server answering Prefect's /api/health and a listening Django port, then
// the same with each one gone.
func TestChecksAgainstRealDependencies(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	prefectSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/health" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("true"))
	}))
	defer prefectSrv.Close()
	django, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer django.Close()

	prefectURL, _ := url.Parse(prefectSrv.URL + "/api")
	djangoURL, _ := url.Parse("http://" + django.Addr().String() + "/webhooks/v1/notification/")
	cfg := config.Config{NotificationKey: "k", DjangoWebhookURL: djangoURL}
	pc := prefect.New(prefect.Config{BaseURL: prefectURL})

	names := func(cs []Check) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.Name)
		}
		return strings.Join(s, ",")
	}
	if got := names(Checks(config.Config{DjangoWebhookURL: djangoURL}, rdb, pc)); got != "redis,prefect" {
		t.Errorf("relay off: checks %s, want redis,prefect (Django is not a dependency then)", got)
	}
	checks := Checks(cfg, rdb, pc)
	if got := names(checks); got != "redis,prefect,django" {
		t.Fatalf("relay on: checks %s", got)
	}
	rep := Run(context.Background(), checks)
	if rep.Status != "ok" {
		t.Fatalf("all up: %+v", rep)
	}

	// Take Prefect and Django away: degraded, still ready.
	prefectSrv.Close()
	django.Close()
	rep = Run(context.Background(), checks)
	if rep.Status != "degraded" {
		t.Fatalf("prefect and django down: %+v", rep)
	}
	for _, r := range rep.Checks {
		if wantOK := r.Name == "redis"; r.OK != wantOK || (!r.OK && r.Error == "") {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}

	// A stopped Redis makes it unavailable.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer dead.Close()
	if rep := Run(context.Background(), []Check{RedisCheck(dead)}); rep.Status != "unavailable" {
		t.Fatalf("redis down: %+v", rep)
	}
}

func TestDjangoCheckDefaultPorts(t *testing.T) {
	t.Parallel()
	// Only the address is derived here; nothing is dialled.
	for _, tc := range []struct{ url, want string }{
		{"http://django.internal/webhooks/", "django.internal:80"},
		{"https://django.internal/webhooks/", "django.internal:443"},
		{"http://127.0.0.1:8002/webhooks/", "127.0.0.1:8002"},
	} {
		u, _ := url.Parse(tc.url)
		if got := djangoAddr(u); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.url, got, tc.want)
		}
	}
}

func TestRequireToken(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) })
	for _, tc := range []struct {
		name, token, header string
		want                int
	}{
		{"no token configured: open", "", "", 200},
		{"right bearer", "s3cret", "Bearer s3cret", 200},
		{"missing header", "s3cret", "", 401},
		{"wrong bearer", "s3cret", "Bearer nope", 401},
		{"basic is not accepted", "s3cret", "Basic czNjcmV0", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", "/metrics", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			RequireToken(tc.token, ok).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("got %d, want %d", rec.Code, tc.want)
			}
			if tc.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}
