package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// The ops port binds where WORKER_LISTEN_ADDR says, reports every dependency
// on /readyz?verbose, and guards /metrics with METRICS_TOKEN; the readiness
// probe's call to Prefect shows in the upstream latency histogram.
func TestOpsPortReadinessAndMetricsToken(t *testing.T) {
	t.Parallel()
	prefectSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/health" {
			_, _ = w.Write([]byte("true"))
			return
		}
		http.NotFound(w, r)
	}))
	defer prefectSrv.Close()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	env := map[string]string{
		"REDIS_URL":                         testenv.Redis(t),
		"JOB_ENCRYPTION_KEY":                base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"WORKER_LISTEN_ADDR":                listen,
		"METRICS_TOKEN":                     "mtok",
		"PREFECT_API_URL":                   prefectSrv.URL + "/api",
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k",
		"DJANGO_WEBHOOK_URL":                "http://127.0.0.1:1/webhooks/v1/notification/", // nothing listens
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout clitest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &stdout, io.Discard) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
	}()

	re := regexp.MustCompile(`worker ops listening on http://(\S+)`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	if addr != listen {
		t.Fatalf("ops port on %q, WORKER_LISTEN_ADDR says %q (output %q)", addr, listen, stdout.String())
	}
	get := func(path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get("/readyz", ""); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body := get("/readyz?verbose", "")
	var rep obs.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 {
		t.Fatalf("/readyz?verbose: %d %s (%v)", code, body, err)
	}
	got := map[string]bool{}
	for _, c := range rep.Checks {
		got[c.Name] = c.OK
	}
	// The fake Prefect has no event stream: the worker says so in "events".
	if want := map[string]bool{"redis": true, "prefect": true, "django": false, "events": false}; fmt.Sprint(got) != fmt.Sprint(want) || rep.Status != "degraded" {
		t.Fatalf("/readyz?verbose: %s, want %v and degraded", body, want)
	}

	if code, _ := get("/metrics", ""); code != 401 {
		t.Fatalf("/metrics without METRICS_TOKEN: %d, want 401", code)
	}
	code, body = get("/metrics", "Bearer mtok")
	if code != 200 {
		t.Fatalf("/metrics with the token: %d", code)
	}
	if !strings.Contains(body, `proxy_upstream_request_duration_seconds_count{method="GET",route="/api/health",status="200",upstream="prefect"} `) {
		t.Errorf("the readiness call to Prefect is not in /metrics:\n%s", grepLines(body, "proxy_upstream"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
