// Package cli is what the binaries share as command-line tools: --help with
// the environment variables, --version, exit codes, and the healthcheck
// command that a container's HEALTHCHECK runs.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

// ExitError carries a process exit code out of a run function; main maps it
// with Exit. Code 2 is a usage error, as with the flag package.
type ExitError struct {
	Code int
	Err  error // nil: nothing more to print
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Usage is a usage error (exit status 2).
func Usage(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

// Exit ends the process for err, as returned by a run function: status 0 for
// nil, the ExitError's code, or 1; the error's text goes to stderr.
func Exit(err error, stderr io.Writer) {
	os.Exit(Code(err, stderr))
}

// Code is the exit status for err, after writing its text to stderr.
func Code(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(stderr, ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(stderr, err)
	return 1
}

// Version is the binary's version and commit: ver and rev as the build set
// them in package main (-ldflags "-X main.version=v1.2.3 -X main.commit=abc"),
// else from the module and VCS information Go embeds (go build in a git
// checkout records the revision; "-dirty" marks local changes), else
// "devel" / "unknown".
func Version(ver, rev string) (string, string) {
	return versionFrom(ver, rev, debug.ReadBuildInfo)
}

func versionFrom(ver, rev string, read func() (*debug.BuildInfo, bool)) (string, string) {
	if ver != "" && rev != "" {
		return ver, rev
	}
	bi, ok := read()
	if ok {
		if ver == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			ver = bi.Main.Version
		}
		if rev == "" {
			var modified bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if rev != "" && modified {
				rev += "-dirty"
			}
		}
	}
	if ver == "" {
		ver = "devel"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev
}

// Command describes one binary for Parse.
type Command struct {
	Name     string
	Synopsis string // one line: what it does
	Usage    string // the usage lines after "Usage:", e.g. "api [flags]\n  api healthcheck"
	Program  config.Program
	// Version and Commit are what the build stamped into package main
	// (empty when it did not); see Version.
	Version, Commit string
	// Flags adds the command's own flags; may be nil.
	Flags func(*flag.FlagSet)
	// HealthAddr, when set, gives the listen address the "healthcheck"
	// command probes (see Prepare).
	HealthAddr func(config.Config) string
}

// ErrDone is returned by Parse when it has answered --help or --version:
// the run function returns nil (exit status 0).
var ErrDone = errors.New("done")

// Parse reads args: -h/--help prints the usage with every variable the
// program reads and returns ErrDone; --version prints the version and
// returns ErrDone; an unknown flag is a usage error (exit status 2). The
// remaining arguments are returned.
func Parse(cmd Command, args []string, stdout, stderr io.Writer) ([]string, error) {
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	showVersion := fs.Bool("version", false, "print the version and commit, and exit")
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		PrintUsage(stdout, cmd, fs)
		return nil, ErrDone
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", cmd.Name, err)
		fmt.Fprintf(stderr, "Usage:\n  %s\nRun '%s --help' for the flags and environment variables.\n", cmd.Usage, cmd.Name)
		return nil, &ExitError{Code: 2}
	case *showVersion:
		ver, rev := Version(cmd.Version, cmd.Commit)
		fmt.Fprintf(stdout, "%s %s (commit %s)\n", cmd.Name, ver, rev)
		return nil, ErrDone
	}
	return fs.Args(), nil
}

// Prepare is how a serving binary starts: Parse, then the configuration
// from the environment and .env, then the "healthcheck" command when cmd has
// a HealthAddr. done is true when the run function should return err
// without serving: --help, --version and healthcheck were answered, or args
// or the configuration are bad.
func Prepare(ctx context.Context, cmd Command, args []string, getenv func(string) string, stdout, stderr io.Writer) (cfg config.Config, done bool, err error) {
	rest, err := Parse(cmd, args, stdout, stderr)
	if errors.Is(err, ErrDone) {
		return cfg, true, nil
	}
	if err != nil {
		return cfg, true, err
	}
	cfg, err = config.Load(config.Env(getenv, ".env"))
	switch {
	case len(rest) == 1 && rest[0] == "healthcheck" && cmd.HealthAddr != nil:
		if err != nil {
			return cfg, true, &ExitError{Code: 1, Err: err}
		}
		return cfg, true, Healthcheck(ctx, cmd.HealthAddr(cfg), 5*time.Second, stdout)
	case len(rest) > 0:
		return cfg, true, Usage("%s: unknown command %q; run '%s --help'", cmd.Name, strings.Join(rest, " "), cmd.Name)
	}
	return cfg, err != nil, err
}

// PrintUsage writes the full help of cmd.
func PrintUsage(w io.Writer, cmd Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s: %s\n\nUsage:\n  %s\n\nFlags:\n", cmd.Name, cmd.Synopsis, cmd.Usage)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  -" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintln(w, "  -h, -help\n    \tprint this help, and exit")
	fmt.Fprintln(w, "\nEnvironment:")
	config.PrintVars(w, cmd.Program)
}

// LocalURL turns a listen address into the URL of the same process from
// inside its host or container: an empty or unspecified host (":8085",
// "0.0.0.0:8085", "[::]:8085") means 127.0.0.1.
func LocalURL(listenAddr, path string) (string, error) {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listenAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// Healthcheck asks the process listening on listenAddr for /livez: nil when
// it answers 200, else an error with exit status 1. It needs no shell or
// curl, so a distroless image's HEALTHCHECK can run it.
func Healthcheck(ctx context.Context, listenAddr string, timeout time.Duration, stdout io.Writer) error {
	u, err := LocalURL(listenAddr, "/livez")
	if err != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("healthcheck: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("healthcheck: %w", err)}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("healthcheck: %s: %w", u, err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return &ExitError{Code: 1, Err: fmt.Errorf("healthcheck: %s answered %s", u, resp.Status)}
	}
	fmt.Fprintf(stdout, "ok: %s answered %s\n", u, resp.Status)
	return nil
}
