package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
)

// The API reference at /docs must render in a real browser with no network
// but the api's own: every asset comes from the binary. Chromium (Debian's
// chromium package, installed by scripts/deps.sh for make test) loads /docs
// from a running api while every host name but 127.0.0.1 resolves to nothing
// and every request would go through a proxy that does not exist.
func TestDocsRenderOfflineInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the api and a headless Chromium")
	}
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (scripts/deps.sh installs it): ", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{
		"LISTEN_ADDR":     "127.0.0.1:0",
		"PREFECT_API_URL": "http://127.0.0.1:1/api",
		"LOG_LEVEL":       "warn",
	}
	var stdout, stderr clitest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	addr := clitest.WaitFor(t, &stdout, regexp.MustCompile(`api listening on (http://\S+)`))

	cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer ccancel()
	// At the lowest CPU priority (its processes inherit it): make test runs
	// packages side by side, and a browser must not starve their timeouts.
	args := []string{chromium}
	if nice, err := exec.LookPath("nice"); err == nil {
		args = []string{nice, "-n", "19", chromium}
	}
	cmd := exec.CommandContext(cctx, args[0], append(args[1:],
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(),
		// The network is cut: names do not resolve, and whatever is not
		// loopback goes to a proxy on a port where nothing listens.
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>;127.0.0.1",
		// Let the page's scripts run and fetch /openapi.json before the DOM is dumped.
		"--virtual-time-budget=15000", "--run-all-compositor-stages-before-draw",
		"--dump-dom", addr+"/docs")...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, cmdStderr(err))
	}
	dom := string(out)
	for _, want := range []string{
		// Operations from the document, rendered by Swagger UI.
		"/proxy/flow_runs/{flow_run_id}/poll",
		"/proxy/deployments/{deployment_id}/flow_run",
		"/webhooks/v1/notification/",
		"/jobs/{id}",
		"Run a deployment now", // an operation's summary
		"opblock-summary",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered /docs does not show %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM (%d bytes):\n%.4000s", len(dom), dom)
	}
}

func cmdStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
