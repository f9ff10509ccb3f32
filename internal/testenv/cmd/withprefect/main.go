// Command withprefect runs a command with one real Prefect server for all of
// it: `go run ./internal/testenv/cmd/withprefect -- go test ./...` starts the
// server (PREFECT_VERSION, default 3.6.29; the venv is created on first use),
// exports its API root as PREFECT_TEST_API_URL, runs the command and stops the
// server. So every test package shares one server instead of starting its own.
// PREFECT_DB=postgres puts that server on a private PostgreSQL cluster.
// If PREFECT_TEST_API_URL is already set, that server is used as it is.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withprefect -- command [args...]")
		return 2
	}
	start := time.Now()
	srv, err := testenv.StartPrefect()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	db := testenv.DBSQLite
	switch {
	case srv.DB != nil:
		db = testenv.DBPostgres + " at " + srv.DB.Addr
	case srv.Proc() == nil:
		db = "its own database (" + testenv.EnvPrefectURL + ")"
	}
	fmt.Fprintf(os.Stderr, "withprefect: Prefect %s at %s on %s (ready in %s)\n", srv.Version, srv.URL, db, time.Since(start).Round(100*time.Millisecond))

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), testenv.EnvPrefectURL+"="+srv.URL)
	// Forward Ctrl-C and SIGTERM to the command; the server is stopped after it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	if err != nil {
		if logs := strings.TrimSpace(srv.Logs()); logs != "" {
			fmt.Fprintf(os.Stderr, "withprefect: the command failed; the Prefect server's last output:\n%s\n", lastLines(logs, 40))
		}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 {
			return 1
		}
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
