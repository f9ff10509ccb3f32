package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"context"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
)

// dashboardMetrics lists every metric docs/grafana-dashboard.json queries.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json is not valid JSON: %v", err)
	}
	selector := regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)
	labelValues := regexp.MustCompile(`label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	seen := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			ms := selector.FindAllStringSubmatch(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q: no metric selector in %q", p.Title, tg.Expr)
			}
			for _, m := range ms {
				seen[m[1]] = true
			}
		}
	}
	for _, v := range dash.Templating.List {
		for _, m := range labelValues.FindAllStringSubmatch(v.Definition, -1) {
			seen[m[1]] = true
		}
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// scrapedNames are the sample names in a Prometheus text exposition.
func scrapedNames(body string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// The dashboard queries only metrics the api (with its in-process worker)
// really exports: start it against a fake Prefect and a fake Django, drive
// a read, a write job that succeeds, one that fails, and a relay delivery,
// then scrape /metrics until every queried metric is there.
func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	t.Parallel()
	want := dashboardMetrics(t)
	if len(want) < 10 {
		t.Fatalf("the dashboard queries only %v", want)
	}

	const okRun, badRun = "0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10", "1b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10"
	prefectSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/admin/version":
			_, _ = io.WriteString(w, `"3.6.29"`)
		case r.Method == "DELETE" && r.URL.Path == "/api/flow_runs/"+okRun:
			w.WriteHeader(http.StatusNoContent)
		case r.Method == "DELETE" && r.URL.Path == "/api/flow_runs/"+badRun:
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"detail": "refused"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"detail": "Not found"}`)
		}
	}))
	defer prefectSrv.Close()
	delivered := make(chan struct{}, 1)
	djangoSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"status": "ok"}`)
		select {
		case delivered <- struct{}{}:
		default:
		}
	}))
	defer djangoSrv.Close()

	env := map[string]string{
		"LISTEN_ADDR":                       "127.0.0.1:0",
		"PREFECT_API_URL":                   prefectSrv.URL + "/api",
		"PREFECT_API_TIMEOUT":               "5",
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "relay-key",
		"DJANGO_WEBHOOK_URL":                djangoSrv.URL + "/webhooks/v1/notification/",
		"JOB_MAX_ATTEMPTS":                  "1",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr clitest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &stdout, &stderr) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("api did not stop")
		}
	}()
	addr := clitest.WaitFor(t, &stdout, regexp.MustCompile(`api listening on (http://\S+)`))

	do := func(method, path, body string, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest(method, addr+path, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("GET", "/proxy/prefect/version", ""); code != 200 {
		t.Fatalf("version: %d", code)
	}
	if code := do("DELETE", "/proxy/flow_runs/"+okRun, ""); code >= 300 {
		t.Fatalf("delete of a run Prefect accepts: %d", code)
	}
	if code := do("DELETE", "/proxy/flow_runs/"+badRun, ""); code < 400 {
		t.Fatalf("delete of a run Prefect refuses: %d", code)
	}
	notification := `{"flow_run_id": "2b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10", "flow_run_name": "nightly", "state_name": "Completed", ` +
		`"state_type": "COMPLETED", "state_timestamp": "` + time.Now().UTC().Format(time.RFC3339Nano) + `", "event_id": "e1", "event": "prefect.flow-run.Completed"}`
	if code := do("POST", "/webhooks/v1/notification/", notification, "X-Notification-Key", "relay-key"); code != 202 && code != 200 {
		t.Fatalf("notification: %d", code)
	}
	select {
	case <-delivered:
	case <-time.After(30 * time.Second):
		t.Fatalf("the notification never reached Django; logs:\n%s", stderr.String())
	}

	var missing []string
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		have := scrapedNames(body)
		missing = missing[:0]
		for _, m := range want {
			if !have[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the dashboard queries metrics /metrics does not export: %v", missing)
	}
	// Upstream calls are labelled by route template, never by raw id.
	for _, id := range []string{okRun, badRun} {
		if strings.Contains(body, id) {
			t.Errorf("a raw id is a label value in /metrics: %s", id)
		}
	}
	if !strings.Contains(body, `route="/api/flow_runs/:id",status="204",upstream="prefect"`) {
		t.Errorf("no Prefect call by route template in /metrics")
	}
}
