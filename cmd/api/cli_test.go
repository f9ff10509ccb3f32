package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

func TestRunAsATool(t *testing.T) {
	t.Parallel()
	idle := map[string]string{"LISTEN_ADDR": clitest.FreeAddr(t)}
	clitest.RunCases(t, run, []clitest.Case{
		{Name: "--help", Args: []string{"--help"}, WantOut: "api healthcheck"},
		{Name: "-h", Args: []string{"-h"}, WantOut: "Environment:"},
		{Name: "-help", Args: []string{"-help"}, WantOut: "-version"},
		{Name: "--version", Args: []string{"--version"}, WantOut: " (commit "},
		{Name: "-version", Args: []string{"-version"}, WantOut: "commit"},
		{Name: "unknown flag", Args: []string{"--listen", ":1"}, WantCode: 2, WantStderr: "flag provided but not defined: -listen"},
		{Name: "unknown command", Args: []string{"serve"}, WantCode: 2, WantStderr: `unknown command "serve"`},
		{Name: "healthcheck with arguments", Args: []string{"healthcheck", "now"}, WantCode: 2, WantStderr: `unknown command "healthcheck now"`},
		{Name: "healthcheck with nothing listening", Args: []string{"healthcheck"}, Env: idle, WantCode: 1, WantStderr: "connection refused"},
		{Name: "healthcheck with a bad config", Args: []string{"healthcheck"}, Env: map[string]string{"LISTEN_ADDR": "nope"}, WantCode: 1, WantStderr: "nope"},
		{Name: "bad config", Env: map[string]string{"PREFECT_API_URL": "ftp://x"}, WantCode: 1, WantStderr: "PREFECT_API_URL"},
	})
}

// --help lists every variable the api reads, with its default.
func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	_, n := clitest.HelpListsEveryVariable(t, run, config.API)
	if n < 20 {
		t.Fatalf("only %d variables for the api", n)
	}
}

// api healthcheck probes the api of the same environment: 0 while it
// serves, 1 once it stopped.
func TestHealthcheckProbesTheRunningAPI(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LISTEN_ADDR": clitest.FreeAddr(t), "PREFECT_API_URL": "http://127.0.0.1:1/api", "LOG_LEVEL": "error"}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	var stdout clitest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenv, &stdout, &clitest.SyncBuffer{}) }()
	clitest.WaitFor(t, &stdout, regexp.MustCompile(`api listening on (http://\S+)`))

	var out, errOut bytes.Buffer
	if code := cli.Code(run(context.Background(), []string{"healthcheck"}, getenv, &out, &errOut), &errOut); code != 0 {
		t.Fatalf("healthcheck of a running api: exit %d %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "127.0.0.1"+env["LISTEN_ADDR"]+"/livez answered 200") {
		t.Errorf("healthcheck said %q", out.String())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("api did not stop")
	}
	errOut.Reset()
	if code := cli.Code(run(context.Background(), []string{"healthcheck"}, getenv, &out, &errOut), &errOut); code != 1 {
		t.Fatalf("healthcheck of a stopped api: exit %d %s", code, errOut.String())
	}
}
