package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

func TestLocalURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ addr, want, wantErr string }{
		{":8085", "http://127.0.0.1:8085/livez", ""},
		{"0.0.0.0:8086", "http://127.0.0.1:8086/livez", ""},
		{"[::]:8086", "http://127.0.0.1:8086/livez", ""},
		{"127.0.0.1:9000", "http://127.0.0.1:9000/livez", ""},
		{"10.1.2.3:9000", "http://10.1.2.3:9000/livez", ""},
		{"[::1]:9000", "http://[::1]:9000/livez", ""},
		{"api.internal:80", "http://api.internal:80/livez", ""},
		{"8085", "", "missing port"},
	}
	for _, tc := range tests {
		got, err := LocalURL(tc.addr, "/livez")
		if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("LocalURL(%q) = %q, %v; want %q, %q", tc.addr, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	serve := func(status int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/livez" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		return ":" + port // as LISTEN_ADDR is usually written
	}
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	tests := []struct {
		name     string
		addr     string
		wantCode int
		wantErr  string
	}{
		{"200 is healthy", serve(200), 0, ""},
		{"503 is unhealthy", serve(503), 1, "503"},
		{"500 is unhealthy", serve(500), 1, "500"},
		{"nothing listening is unhealthy", closed(), 1, "connection refused"},
		{"a bad address is unhealthy", "nope", 1, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := Healthcheck(context.Background(), tc.addr, 5*time.Second, &out)
			if code := Code(err, &errOut); code != tc.wantCode || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Fatalf("code %d (%q), want %d with %q", code, errOut.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}

func TestCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err     error
		want    int
		wantOut string
	}{
		{nil, 0, ""},
		{errors.New("boom"), 1, "boom\n"},
		{Usage("bad %s", "arg"), 2, "bad arg\n"},
		{&ExitError{Code: 2}, 2, ""},
		{&ExitError{Code: 1, Err: errors.New("unhealthy")}, 1, "unhealthy\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if got := Code(tc.err, &b); got != tc.want || b.String() != tc.wantOut {
			t.Errorf("Code(%v) = %d %q, want %d %q", tc.err, got, b.String(), tc.want, tc.wantOut)
		}
	}
}

func TestVersionFrom(t *testing.T) {
	t.Parallel()
	info := func(main string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: main}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name             string
		ver, rev         string
		read             func() (*debug.BuildInfo, bool)
		wantVer, wantRev string
	}{
		{"ldflags win", "v1.2.3", "abc", info("v9.9.9", "vcs.revision", "def"), "v1.2.3", "abc"},
		{"vcs info", "", "", info("(devel)", "vcs.revision", "def", "vcs.modified", "false"), "devel", "def"},
		{"dirty tree", "", "", info("(devel)", "vcs.revision", "def", "vcs.modified", "true"), "devel", "def-dirty"},
		{"go install of a tag", "", "", info("v1.4.0"), "v1.4.0", "unknown"},
		{"version only by ldflags", "v2.0.0", "", info("(devel)", "vcs.revision", "def"), "v2.0.0", "def"},
		{"nothing known", "", "", none, "devel", "unknown"},
	}
	for _, tc := range tests {
		if v, r := versionFrom(tc.ver, tc.rev, tc.read); v != tc.wantVer || r != tc.wantRev {
			t.Errorf("%s: %s %s, want %s %s", tc.name, v, r, tc.wantVer, tc.wantRev)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	cmd := Command{Name: "tool", Synopsis: "does things", Usage: "tool [flags]", Program: config.Worker,
		Flags: func(fs *flag.FlagSet) { fs.String("url", "http://x", "where") }}
	tests := []struct {
		name                string
		args                []string
		wantErr             error
		wantCode            int
		wantRest            []string
		wantOut, wantStderr string
	}{
		{"no args", nil, nil, 0, []string{}, "", ""},
		{"a command", []string{"healthcheck"}, nil, 0, []string{"healthcheck"}, "", ""},
		{"--help", []string{"--help"}, ErrDone, 0, nil, "WORKER_LISTEN_ADDR", ""},
		{"-h", []string{"-h"}, ErrDone, 0, nil, "-url string", ""},
		{"--version", []string{"--version"}, ErrDone, 0, nil, "tool devel", ""},
		{"unknown flag", []string{"--nope"}, nil, 2, nil, "", "flag provided but not defined: -nope"},
		{"flag without value", []string{"-url"}, nil, 2, nil, "", "flag needs an argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			rest, err := Parse(cmd, tc.args, &out, &errOut)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
			} else if code := Code(err, &errOut); code != tc.wantCode {
				t.Fatalf("code %d (%v), want %d", code, err, tc.wantCode)
			}
			if tc.wantRest != nil && strings.Join(rest, " ") != strings.Join(tc.wantRest, " ") {
				t.Errorf("rest %q, want %q", rest, tc.wantRest)
			}
			if !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errOut.String(), tc.wantStderr) {
				t.Errorf("stdout %q, stderr %q; want %q / %q", out.String(), errOut.String(), tc.wantOut, tc.wantStderr)
			}
		})
	}
}
