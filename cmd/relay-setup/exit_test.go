package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main() itself when the test binary is started as the
// command (see TestExitStatus), so the exit statuses main maps are checked
// on a real process.
func TestMain(m *testing.M) {
	if os.Getenv("RUN_AS_COMMAND") == "1" {
		os.Args = append([]string{"relay-setup"}, strings.Fields(os.Getenv("COMMAND_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestExitStatus(t *testing.T) {
	t.Parallel()
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
				t.Fatalf("relay-setup %s: exit %d, want %d\n%s", tc.args, code, tc.want, out)
			}
		})
	}
}
