package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
)

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, func(k string) string {
		if k == "PREFECT_API_URL" {
			return "ftp://nope"
		}
		return ""
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PREFECT_API_URL") {
		t.Fatalf("want an error naming PREFECT_API_URL, got %v", err)
	}
}

func TestRunServesEmbeddedAndStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{
		"LISTEN_ADDR":         "127.0.0.1:0",
		"PREFECT_API_URL":     "http://127.0.0.1:1/api", // nothing listens: version answers null
		"PREFECT_API_TIMEOUT": "2",
	}
	var stdout, stderr clitest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &stdout, &stderr) }()

	addr := clitest.WaitFor(t, &stdout, regexp.MustCompile(`api listening on (http://\S+)`))
	for _, path := range []string{"/livez", "/readyz", "/proxy/prefect/version", "/proxy/prefect/version/"} {
		resp, err := http.Get(addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
		if strings.HasPrefix(path, "/proxy/prefect/version") && strings.TrimSpace(string(body)) != "null" {
			t.Errorf("%s with Prefect down: want null, got %s", path, body)
		}
	}
	if !strings.Contains(stderr.String(), "NOT durable") {
		t.Errorf("embedded mode must say it is not durable; logs:\n%s", stderr.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancel", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after its context was cancelled")
	}
}
