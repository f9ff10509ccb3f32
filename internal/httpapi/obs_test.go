package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// /readyz keeps deciding on Redis alone; ?verbose reports every dependency;
// METRICS_TOKEN guards /metrics. Every answer is checked against openapi.json.
func TestReadyzVerboseAndMetricsToken(t *testing.T) {
	t.Parallel()
	log := logrus.New()
	log.SetOutput(io.Discard)
	fake := prefecttest.New(t)
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	deps := func(redisUp bool) Deps {
		redis := up
		ready := func(*gin.Context) error { return nil }
		if !redisUp {
			redis, ready = down, func(*gin.Context) error { return errors.New("redis not reachable") }
		}
		return Deps{Config: config.Config{MetricsToken: "mtok"}, Log: log,
			Proxy: proxy.New(fake.Client(), log), Metrics: NewMetrics(prometheus.NewRegistry()), Ready: ready,
			Checks: []obs.Check{
				{Name: "redis", Required: true, Probe: redis},
				{Name: "prefect", Probe: down}, // Prefect is down in both
				{Name: "django", Probe: up},
			}}
	}
	api := specChecked(t, New(deps(true)))
	noRedis := specChecked(t, New(deps(false)))

	for _, tc := range []struct {
		name       string
		h          http.Handler
		path, auth string
		status     int
		report     string // verbose: the report's status
	}{
		{"plain readyz ignores Prefect", api, "/readyz", "", 200, ""},
		{"verbose says Prefect is down", api, "/readyz?verbose", "", 200, "degraded"},
		{"verbose on the alias", api, "/healthz?verbose", "", 200, "degraded"},
		{"verbose without Redis", noRedis, "/readyz?verbose", "", 503, "unavailable"},
		{"plain without Redis", noRedis, "/readyz", "", 503, ""},
		{"metrics without the token", api, "/metrics", "", 401, ""},
		{"metrics with a wrong token", api, "/metrics", "Bearer nope", 401, ""},
		{"metrics with the token", api, "/metrics", "Bearer mtok", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("%d %.300s", rec.Code, rec.Body.String())
			}
			if tc.report == "" {
				return
			}
			var rep obs.Report
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Status != tc.report || len(rep.Checks) != 3 {
				t.Fatalf("report %+v, want %s with 3 checks", rep, tc.report)
			}
			for _, c := range rep.Checks {
				if c.Name == "prefect" && (c.OK || !strings.Contains(c.Error, "refused")) {
					t.Errorf("prefect: %+v", c)
				}
			}
		})
	}
}
