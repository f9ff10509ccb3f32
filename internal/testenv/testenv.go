// Package testenv starts the real parts end-to-end tests run against: a real
// redis-server, one real Prefect server per test binary, and the api and
// worker binaries built from this module. It also seeds Prefect over its REST
// API and offers a test Django that checks notifications the way Django does.
//
// Use it from a package's TestMain so shared servers are stopped at the end:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
// Every child process is started in its own process group with a parent-death
// signal, so a crashed or killed test binary does not leave servers behind.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// shared holds what one test binary starts once and stops in Main. It is the
// only package-level state: a test binary is exactly the scope of "one Prefect
// server per run" and "build the binaries once".
var shared struct {
	mu       sync.Mutex
	cleanups []func()

	prefectOnce sync.Once
	prefect     *PrefectServer
	prefectErr  error

	buildOnce sync.Once
	binDir    string
	buildErr  error
}

// Main runs the tests and then stops whatever the harness started for the
// whole binary (the Prefect server, the built binaries' directory).
func Main(m *testing.M) int {
	code := m.Run()
	Shutdown()
	return code
}

// Shutdown stops the shared servers now. Main calls it; call it yourself only
// from a TestMain that cannot use Main.
func Shutdown() {
	shared.mu.Lock()
	fns := shared.cleanups
	shared.cleanups = nil
	shared.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// AtShutdown registers f to run in Main after all tests, last registered
// first: the place to stop a package-wide server.
func AtShutdown(f func()) { atShutdown(f) }

func atShutdown(f func()) {
	shared.mu.Lock()
	shared.cleanups = append(shared.cleanups, f)
	shared.mu.Unlock()
}

// Unique returns prefix plus a random suffix, safe for Prefect names (which
// must match ^[a-z0-9-]*$ for blocks).
func Unique(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return strings.ToLower(prefix) + "-" + hex.EncodeToString(b)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RepoRoot finds the module root (the directory holding go.mod) from the
// working directory, which `go test` sets to the package directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

func must(tb testing.TB, err error, what string) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("testenv: %s: %v", what, err)
	}
}

// tail returns the last n bytes of s, for error messages quoting logs.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func errorf(format string, args ...any) error { return fmt.Errorf("testenv: "+format, args...) }
