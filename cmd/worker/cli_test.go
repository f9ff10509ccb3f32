package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return ":" + port
}

func TestRunAsATool(t *testing.T) {
	t.Parallel()
	idle := map[string]string{"WORKER_LISTEN_ADDR": freeAddr(t), "REDIS_URL": "redis://127.0.0.1:1",
		"JOB_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}
	tests := []struct {
		name                string
		args                []string
		env                 map[string]string
		wantCode            int
		wantOut, wantStderr string
	}{
		{"--help", []string{"--help"}, nil, 0, "worker healthcheck", ""},
		{"-h", []string{"-h"}, nil, 0, "Environment:", ""},
		{"--version", []string{"--version"}, nil, 0, "worker ", ""},
		{"unknown flag", []string{"-concurrency", "3"}, nil, 2, "", "flag provided but not defined: -concurrency"},
		{"unknown command", []string{"start"}, nil, 2, "", `unknown command "start"`},
		{"healthcheck with nothing listening", []string{"healthcheck"}, idle, 1, "", "connection refused"},
		{"no REDIS_URL", nil, nil, 1, "", "REDIS_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out, &errOut)
			code := cli.Code(err, &errOut)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errOut.String(), tc.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errOut.String(),
					tc.wantCode, tc.wantOut, tc.wantStderr)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Vars() {
		if v.For&config.Worker == 0 {
			continue
		}
		def := v.Default
		if def == "" {
			def = v.Note
		}
		if !regexp.MustCompile(`(?m)^\s+` + v.Name + `\s+\(?` + regexp.QuoteMeta(def)).MatchString(out.String()) {
			t.Errorf("--help does not list %s with its default %q", v.Name, def)
		}
	}
	if strings.Contains(out.String(), "PROXY_API_TOKEN") {
		t.Errorf("the worker does not read PROXY_API_TOKEN:\n%s", out.String())
	}
}

// worker healthcheck probes the worker of the same environment through its
// ops port: 0 while it works, 1 once it stopped.
func TestHealthcheckProbesTheRunningWorker(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	env := map[string]string{
		"REDIS_URL":          "redis://" + mr.Addr(),
		"JOB_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"WORKER_LISTEN_ADDR": "0.0.0.0" + freeAddr(t),
		"LOG_LEVEL":          "error",
	}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	var stdout syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenv, &stdout, &syncBuffer{}) }()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stdout.String(), "listening"); {
		if time.Now().After(deadline) {
			t.Fatalf("worker never started: %q", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out, errOut bytes.Buffer
	if code := cli.Code(run(context.Background(), []string{"healthcheck"}, getenv, &out, &errOut), &errOut); code != 0 {
		t.Fatalf("healthcheck of a running worker: exit %d %s", code, errOut.String())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
	errOut.Reset()
	if code := cli.Code(run(context.Background(), []string{"healthcheck"}, getenv, &out, &errOut), &errOut); code != 1 {
		t.Fatalf("healthcheck of a stopped worker: exit %d %s", code, errOut.String())
	}
}
