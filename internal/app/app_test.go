package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

// An embedded process runs on one Redis client: the api's readiness, the
// job queue, the worker and asynqmon all answer through it, and Close
// releases it after the worker stopped.
func TestEmbeddedAppSharesOneRedisClient(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"ADMIN_TOKEN": "adm", "PREFECT_API_URL": "http://127.0.0.1:1/api"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	w, err := a.StartWorker()
	if err != nil {
		t.Fatal(err)
	}
	h, err := a.API(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/readyz":                `"ok"`,
		"/monitoring/api/queues": `"queues"`,
		"/jobs/" + "6f1d3c2e-5b7a-4c1e-9a52-0d4b3f7e8a61": "job not found",
	} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer adm")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %s, want %s", path, rec.Code, rec.Body, want)
		}
	}
	poolBefore := a.Redis.PoolStats().TotalConns
	if poolBefore == 0 {
		t.Error("the shared client was not used")
	}
	w.Shutdown()
	a.Close()
	if err := a.Redis.Ping(context.Background()).Err(); err == nil {
		t.Error("Close left the client open")
	}
}
