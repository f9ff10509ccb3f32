// Package clitest is what the binaries' tests share: main() run as a real
// process for its exit status, a table of run() cases, the --help check of
// the variables, and helpers to watch a running command's output.
package clitest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

// Run is a binary's run function.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Main is the binary's TestMain: started as the command (see ExitStatus),
// the test binary runs main itself, so the exit statuses main maps are
// checked on a real process.
func Main(m *testing.M, name string, main func()) {
	if os.Getenv("RUN_AS_COMMAND") == "1" {
		os.Args = append([]string{name}, strings.Fields(os.Getenv("COMMAND_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// ExitStatus checks main's exit statuses for help, version and a bad flag
// (TestMain must be Main).
func ExitStatus(t *testing.T, name string) {
	t.Helper()
	tests := []struct {
		args string
		want int
	}{
		{"--help", 0},
		{"-h", 0},
		{"--version", 0},
		{"--no-such-flag", 2},
	}
	for _, tc := range tests {
		t.Run(tc.args, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "RUN_AS_COMMAND=1", "COMMAND_ARGS="+tc.args)
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Fatalf("%s %s: exit %d, want %d\n%s", name, tc.args, code, tc.want, out)
			}
		})
	}
}

// Case is one run of a binary as a tool: its arguments and environment, and
// the exit code and output it must give (WantOut and WantStderr are
// substrings).
type Case struct {
	Name                string
	Args                []string
	Env                 map[string]string
	WantCode            int
	WantOut, WantStderr string
}

// Env is a getenv reading m.
func Env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// RunCases runs each case through run, in parallel.
func RunCases(t *testing.T, run Run, cases []Case) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.Args, Env(tc.Env), &out, &errOut)
			code := cli.Code(err, &errOut)
			if code != tc.WantCode || !strings.Contains(out.String(), tc.WantOut) || !strings.Contains(errOut.String(), tc.WantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errOut.String(),
					tc.WantCode, tc.WantOut, tc.WantStderr)
			}
		})
	}
}

// HelpListsEveryVariable checks that --help lists every variable program
// reads with its default, and returns the help and how many it checked.
func HelpListsEveryVariable(t *testing.T, run Run, program config.Program) (string, int) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, Env(nil), &out, &out); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range config.Vars() {
		if v.For&program == 0 {
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
	return out.String(), n
}

// FreeAddr is ":port" of a loopback port nothing listens on, written as a
// listen address usually is (every interface).
func FreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return ":" + port
}

// SyncBuffer lets a test read what run writes from another goroutine.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor waits up to 20 s for a line of out matching re and returns its
// first group.
func WaitFor(t *testing.T, out *SyncBuffer, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no line matching %s in %q", re, out.String())
	return ""
}
