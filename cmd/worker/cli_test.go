package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

func TestRunAsATool(t *testing.T) {
	t.Parallel()
	idle := map[string]string{"WORKER_LISTEN_ADDR": clitest.FreeAddr(t), "REDIS_URL": "redis://127.0.0.1:1",
		"JOB_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}
	clitest.RunCases(t, run, []clitest.Case{
		{Name: "--help", Args: []string{"--help"}, WantOut: "worker healthcheck"},
		{Name: "-h", Args: []string{"-h"}, WantOut: "Environment:"},
		{Name: "--version", Args: []string{"--version"}, WantOut: "worker "},
		{Name: "unknown flag", Args: []string{"-concurrency", "3"}, WantCode: 2, WantStderr: "flag provided but not defined: -concurrency"},
		{Name: "unknown command", Args: []string{"start"}, WantCode: 2, WantStderr: `unknown command "start"`},
		{Name: "healthcheck with nothing listening", Args: []string{"healthcheck"}, Env: idle, WantCode: 1, WantStderr: "connection refused"},
		{Name: "no REDIS_URL", WantCode: 1, WantStderr: "REDIS_URL"},
	})
}

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	out, _ := clitest.HelpListsEveryVariable(t, run, config.Worker)
	if strings.Contains(out, "PROXY_API_TOKEN") {
		t.Errorf("the worker does not read PROXY_API_TOKEN:\n%s", out)
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
		"WORKER_LISTEN_ADDR": "0.0.0.0" + clitest.FreeAddr(t),
		"LOG_LEVEL":          "error",
	}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	var stdout clitest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenv, &stdout, &clitest.SyncBuffer{}) }()
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
