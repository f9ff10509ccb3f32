package main

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
	"github.com/alicebob/miniredis/v2"
)

func TestRunNeedsRedisURL(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("want an error naming REDIS_URL, got %v", err)
	}
}

func TestRunServesLivezAndStops(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	env := map[string]string{
		"REDIS_URL":          "redis://" + mr.Addr(),
		"JOB_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"WORKER_LISTEN_ADDR": "127.0.0.1:0",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout clitest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &stdout, io.Discard) }()

	re := regexp.MustCompile(`worker ops listening on (http://\S+)`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("worker never said where it listens: %q", stdout.String())
	}
	for _, path := range []string{"/livez", "/readyz"} {
		resp, err := http.Get(addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
}
