package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

// freeAddr is ":port" of a port nothing listens on, written as LISTEN_ADDR
// usually is (every interface).
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
	idle := map[string]string{"LISTEN_ADDR": freeAddr(t)}
	tests := []struct {
		name                string
		args                []string
		env                 map[string]string
		wantCode            int
		wantOut, wantStderr string
	}{
		{"--help", []string{"--help"}, nil, 0, "api healthcheck", ""},
		{"-h", []string{"-h"}, nil, 0, "Environment:", ""},
		{"-help", []string{"-help"}, nil, 0, "-version", ""},
		{"--version", []string{"--version"}, nil, 0, " (commit ", ""},
		{"-version", []string{"-version"}, nil, 0, "commit", ""},
		{"unknown flag", []string{"--listen", ":1"}, nil, 2, "", "flag provided but not defined: -listen"},
		{"unknown command", []string{"serve"}, nil, 2, "", `unknown command "serve"`},
		{"healthcheck with arguments", []string{"healthcheck", "now"}, nil, 2, "", `unknown command "healthcheck now"`},
		{"healthcheck with nothing listening", []string{"healthcheck"}, idle, 1, "", "connection refused"},
		{"healthcheck with a bad config", []string{"healthcheck"}, map[string]string{"LISTEN_ADDR": "nope"}, 1, "", "nope"},
		{"bad config", nil, map[string]string{"PREFECT_API_URL": "ftp://x"}, 1, "", "PREFECT_API_URL"},
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

// --help lists every variable the api reads, with its default.
func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range config.Vars() {
		if v.For&config.API == 0 {
			continue
		}
		n++
		def := v.Default
		if def == "" {
			def = v.Note
		}
		if !regexp.MustCompile(`(?m)^\s+` + v.Name + `\s+\(?` + regexp.QuoteMeta(def)).MatchString(out.String()) {
			t.Errorf("--help does not list %s with its default %q", v.Name, def)
		}
	}
	if n < 20 {
		t.Fatalf("only %d variables for the api", n)
	}
}

// api healthcheck probes the api of the same environment: 0 while it
// serves, 1 once it stopped.
func TestHealthcheckProbesTheRunningAPI(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LISTEN_ADDR": freeAddr(t), "PREFECT_API_URL": "http://127.0.0.1:1/api", "LOG_LEVEL": "error"}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	var stdout syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenv, &stdout, &syncBuffer{}) }()
	waitFor(t, &stdout, regexp.MustCompile(`api listening on (http://\S+)`))

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
