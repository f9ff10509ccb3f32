package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/retry"
)

// DefaultPrefectVersion is Dalgo's pin; PREFECT_VERSION overrides it.
const DefaultPrefectVersion = "3.6.29"

// Environment variables the harness reads.
const (
	// EnvPrefectURL points the tests at an already running Prefect server
	// (its API root, e.g. http://127.0.0.1:4200/api) instead of starting one.
	EnvPrefectURL = "PREFECT_TEST_API_URL"
	// EnvPrefectVersion selects the Prefect release to install and start.
	EnvPrefectVersion = "PREFECT_VERSION"
	// EnvPrefectVenv overrides the virtualenv location
	// (default <repo>/.venv/prefect-<version>).
	EnvPrefectVenv = "PREFECT_VENV"
)

// PrefectServer is a real Prefect server: started by the harness, or the one
// named by PREFECT_TEST_API_URL.
type PrefectServer struct {
	// URL is the API root, e.g. http://127.0.0.1:41234/api — what the proxy's
	// PREFECT_API_URL is set to.
	URL string
	// Version is what the server reports at /api/admin/version.
	Version string
	// Home is the isolated PREFECT_HOME (empty for an external server).
	Home string
	// DB is the server's PostgreSQL cluster (nil on SQLite or external).
	DB *Postgres

	proc *Proc
	http *http.Client
	venv string // the virtualenv it runs from (harness-started servers)
	port int
}

// Prefect returns the test binary's shared Prefect server, starting it on
// first use (up to two minutes on a fresh machine) and stopping it in Main.
// Tests isolate themselves by unique names (see Unique). With -short the
// calling test is skipped rather than waiting for a server.
func Prefect(tb testing.TB) *PrefectServer {
	tb.Helper()
	if testing.Short() && os.Getenv(EnvPrefectURL) == "" {
		tb.Skip("testenv: -short: not starting a Prefect server")
	}
	shared.prefectOnce.Do(func() {
		shared.prefect, shared.prefectErr = StartPrefect()
		if shared.prefect != nil {
			atShutdown(shared.prefect.Stop)
		}
	})
	must(tb, shared.prefectErr, "prefect server")
	return shared.prefect
}

// PrefectVersion is the release the harness installs and starts.
func PrefectVersion() string {
	if v := strings.TrimSpace(os.Getenv(EnvPrefectVersion)); v != "" {
		return v
	}
	return DefaultPrefectVersion
}

// StartPrefect starts a Prefect server (or connects to PREFECT_TEST_API_URL).
// The caller stops it with Stop. Prefer Prefect(tb).
func StartPrefect() (*PrefectServer, error) {
	if u := strings.TrimSpace(os.Getenv(EnvPrefectURL)); u != "" {
		s, err := ConnectPrefect(u)
		if err != nil {
			return nil, errorf("%s=%s: %v", EnvPrefectURL, u, err)
		}
		return s, nil
	}
	if PrefectDB() == DBPostgres {
		return StartPrefectPostgres()
	}
	return startPrefect(nil)
}

// StartPrefectOn starts a fresh Prefect server of its own on db (DBSQLite or
// DBPostgres), whatever PREFECT_DB and PREFECT_TEST_API_URL say: for a
// benchmark that compares databases. The caller stops it with Stop.
func StartPrefectOn(db string) (*PrefectServer, error) {
	switch db {
	case DBSQLite:
		return startPrefect(nil)
	case DBPostgres:
		return StartPrefectPostgres()
	}
	return nil, errorf("unknown Prefect database %q (want %s or %s)", db, DBSQLite, DBPostgres)
}

// StartPrefectPostgres starts a Prefect server backed by its own PostgreSQL
// cluster (StartPostgres), whatever PREFECT_DB says. Stop stops both.
func StartPrefectPostgres() (*PrefectServer, error) {
	db, err := StartPostgres()
	if err != nil {
		return nil, err
	}
	s, err := startPrefect(db)
	if err != nil {
		db.Stop()
		return nil, err
	}
	return s, nil
}

// startPrefect starts a server on SQLite (db nil) or on db.
func startPrefect(db *Postgres) (*PrefectServer, error) {
	hc := &http.Client{Timeout: prefectCallTimeout}
	venv, err := PrefectVenv()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ { // the free port can be taken in between
		s, err := startPrefectIn(venv, PrefectVersion(), hc, db, attempt == 0)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// ConnectPrefect uses a Prefect server already running at apiURL (its API
// root, e.g. a benchmark's BENCH_PREFECT_URL); Stop leaves it running.
func ConnectPrefect(apiURL string) (*PrefectServer, error) {
	s := &PrefectServer{URL: strings.TrimRight(apiURL, "/"), http: &http.Client{Timeout: prefectCallTimeout}}
	if err := s.waitHealthy(nil, 10*time.Second); err != nil {
		return nil, err
	}
	return s, s.readVersion()
}

// PrefectVenv returns a virtualenv with the harness's Prefect (PrefectVersion)
// installed, creating it with scripts/prefect-venv.sh when it is missing.
func PrefectVenv() (string, error) {
	venv, err := PrefectVenvFor(PrefectVersion())
	if err != nil {
		return "", err
	}
	makeDatabaseTemplate(venv, PrefectVersion())
	return venv, nil
}

// StartPrefectVersion starts a headless Prefect server of the given release
// (PrefectServerEnv, as the shared one) for a test of its own: one it may
// restart. The venv is installed first when missing. The caller stops it.
func StartPrefectVersion(version string) (*PrefectServer, error) {
	venv, err := PrefectVenvFor(version)
	if err != nil {
		return nil, err
	}
	makeDatabaseTemplate(venv, version)
	hc := &http.Client{Timeout: prefectCallTimeout}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ { // the free port can be taken in between
		s, err := startPrefectIn(venv, version, hc, nil, attempt == 0)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// Restart stops the server (SIGTERM, as an operator's restart) and starts it
// again on the same port with the same home and database.
func (s *PrefectServer) Restart() error {
	if s.proc == nil {
		return errorf("cannot restart an external Prefect server")
	}
	s.proc.Stop(15 * time.Second)
	return s.launch()
}

// Venv is the virtualenv the server runs from ("" for an external server):
// its bin/python runs flows against it with Prefect's own client.
func (s *PrefectServer) Venv() string { return s.venv }

// PrefectVenvFor returns a virtualenv with the given Prefect release:
// PREFECT_VENV for the harness's own version, else <repo>/.venv/prefect-<version>,
// installed or rebuilt by scripts/prefect-venv.sh when it is missing or was
// built from other constraints (the script is a no-op when it is current).
func PrefectVenvFor(version string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	if venv := os.Getenv(EnvPrefectVenv); venv != "" && version == PrefectVersion() {
		// Someone else's venv: use it as it is.
		if _, err := os.Stat(filepath.Join(venv, "bin", "prefect")); err != nil {
			return "", errorf("%s=%s has no bin/prefect", EnvPrefectVenv, venv)
		}
		return venv, nil
	}
	venv := filepath.Join(root, ".venv", "prefect-"+version)
	script := filepath.Join(root, "scripts", "prefect-venv.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, venv)
	cmd.Env = append(os.Environ(), EnvPrefectVersion+"="+version)
	cmd.Stdout = os.Stderr // progress of a long install belongs in the test output
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", errorf("installing prefect %s into %s with %s: %v", version, venv, script, err)
	}
	return venv, nil
}

// makeDatabaseTemplate migrates an empty database once per venv with
// `prefect server database upgrade`, run alone so the file is complete when it
// is copied. Starting from it skips most of a first start. It is only a cache:
// on any failure the server simply migrates its own database.
func makeDatabaseTemplate(venv, version string) {
	dst := templatePath(version)
	if _, err := os.Stat(dst); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return
	}
	home, err := os.MkdirTemp("", "testenv-prefect-template-")
	if err != nil {
		return
	}
	defer os.RemoveAll(home)
	env := PrefectServerEnv(home, 4200)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(venv, "bin", "prefect"), "server", "database", "upgrade", "-y")
	cmd.Env = envList(env)
	cmd.Dir = home
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: prefect database template not made (%v): %s\n", err, tail(string(out), 1000))
		return
	}
	b, err := os.ReadFile(filepath.Join(home, "prefect.db"))
	if err != nil {
		return
	}
	tmp := dst + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, dst)
	}
}

// prefectCallTimeout bounds one call of the harness to Prefect. The shared
// SQLite server of a whole test run stalls now and then for tens of seconds
// (a service holding the write lock, e.g. the triggers service's cleanup); a
// test's own seeding call waits that out instead of failing the test.
const prefectCallTimeout = 2 * time.Minute

// PrefectServerEnv is the environment of a headless Prefect server for tests:
// no UI, no analytics, scheduler and late-runs off (so no run appears or turns
// Late on its own), the triggers/actions services on (automations must fire
// for relay tests). StartLocalPrefect is the server with everything on.
func PrefectServerEnv(home string, port int) map[string]string {
	return map[string]string{
		"PREFECT_HOME":                                         home,
		"PREFECT_SERVER_DATABASE_CONNECTION_URL":               "sqlite+aiosqlite:///" + filepath.Join(home, "prefect.db"),
		"PREFECT_SERVER_API_HOST":                              "127.0.0.1",
		"PREFECT_SERVER_API_PORT":                              strconv.Itoa(port),
		"PREFECT_API_URL":                                      fmt.Sprintf("http://127.0.0.1:%d/api", port),
		"PREFECT_SERVER_UI_ENABLED":                            "false",
		"PREFECT_UI_ENABLED":                                   "false",
		"PREFECT_SERVER_ANALYTICS_ENABLED":                     "false",
		"PREFECT_SERVER_LOGGING_LEVEL":                         "WARNING",
		"PREFECT_LOGGING_LEVEL":                                "WARNING",
		"PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED":            "false",
		"PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED":            "false",
		"PREFECT_SERVER_SERVICES_FOREMAN_ENABLED":              "false",
		"PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED":    "false",
		"PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
		"PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED":          "false",
		"PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED":             "true",
		"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED":      "true",
		"PYTHONUNBUFFERED":                                     "1",
	}
}

// PrefectArgs are the `prefect server start` flags matching PrefectServerEnv.
func PrefectArgs(port int) []string {
	return []string{"server", "start", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--no-ui", "--analytics-off", "--no-scheduler", "--no-late-runs"}
}

func startPrefectIn(venv, version string, hc *http.Client, db *Postgres, useTemplate bool) (*PrefectServer, error) {
	home, err := os.MkdirTemp("", "testenv-prefect-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	// A migrated empty database saves most of a first start (about a hundred
	// SQLite migrations); the venv keeps one per Prefect version.
	switch {
	case db != nil:
		// The database lives in its own cluster; nothing to seed.
	case useTemplate:
		seedDatabase(home, version)
	}
	s := &PrefectServer{URL: fmt.Sprintf("http://127.0.0.1:%d/api", port), Home: home, DB: db, http: hc, venv: venv, port: port}
	if err := s.launch(); err != nil {
		return nil, err
	}
	if err := s.readVersion(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// launch starts the server process in s.Home on s.port and waits until it
// is healthy; its output is appended to server.log.
// serverEnv is the server's environment: PrefectServerEnv, and its
// PostgreSQL database when it has one.
func (s *PrefectServer) serverEnv() map[string]string {
	env := PrefectServerEnv(s.Home, s.port)
	if s.DB != nil {
		env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = s.DB.PrefectURL()
	}
	return env
}

func (s *PrefectServer) launch() error {
	logFile, err := os.OpenFile(filepath.Join(s.Home, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p, err := startProc(procOpts{
		name:    "prefect",
		path:    filepath.Join(s.venv, "bin", "prefect"),
		args:    PrefectArgs(s.port),
		env:     envList(s.serverEnv()),
		dir:     s.Home, // Prefect also reads ./.env and ./prefect.toml
		logFile: logFile,
	})
	if err != nil {
		_ = logFile.Close()
		return err
	}
	s.proc = p
	if err := s.waitHealthy(p, 120*time.Second); err != nil {
		p.Kill()
		_ = logFile.Close()
		return err
	}
	go func() { <-p.done; _ = logFile.Close() }()
	return nil
}

// SupportedPrefectVersions are the Prefect releases the proxy supports (each
// has its pins in scripts/constraints/): Dalgo's pin first, then the newest
// release checked. Tests that must hold on every release iterate over them.
func SupportedPrefectVersions() []string { return []string{DefaultPrefectVersion, "3.9.1"} }

// StartLocalPrefect starts a Prefect server of the given release exactly as
// `make run` does, with scripts/prefect-server.sh: every Prefect service on
// (the scheduler included), the UI served, a fresh home and database that
// the server migrates itself. It listens on a free loopback port; the venv is
// installed first when missing (PrefectVenvFor). The caller stops it; its
// whole output stays readable with Logs after Stop.
func StartLocalPrefect(version string) (*PrefectServer, error) {
	venv, err := PrefectVenvFor(version)
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: prefectCallTimeout}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ { // the free port can be taken in between
		s, err := startLocalPrefectIn(root, venv, version, hc)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startLocalPrefectIn(root, venv, version string, hc *http.Client) (*PrefectServer, error) {
	home, err := os.MkdirTemp("", "testenv-prefect-local-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		_ = os.RemoveAll(home)
		return nil, err
	}
	p, err := startProc(procOpts{
		name: "prefect " + version + " (as make run starts it)",
		path: "bash",
		args: []string{filepath.Join(root, "scripts", "prefect-server.sh"), "127.0.0.1", strconv.Itoa(port)},
		env: envList(map[string]string{
			"PREFECT_HOME":    home,
			EnvPrefectVersion: version,
			EnvPrefectVenv:    venv,
		}),
		dir: home,
	})
	if err != nil {
		_ = os.RemoveAll(home)
		return nil, err
	}
	s := &PrefectServer{URL: fmt.Sprintf("http://127.0.0.1:%d/api", port), Home: home, proc: p, http: hc}
	// No template database: a first `make run` migrates its own, and that
	// start must be clean too.
	if err := s.waitHealthy(p, 4*time.Minute); err != nil {
		p.Kill()
		_ = os.RemoveAll(home)
		return nil, err
	}
	if err := s.readVersion(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// seedDatabase copies the venv's migrated template database (made by
// makeDatabaseTemplate) into home.
func seedDatabase(home, version string) {
	src := templatePath(version)
	b, err := os.ReadFile(src)
	if err != nil {
		return
	}
	_ = os.WriteFile(filepath.Join(home, "prefect.db"), b, 0o600)
}

// templatePath is where the migrated empty database of a Prefect version is
// cached (git-ignored, next to the venvs).
func templatePath(version string) string {
	root, err := RepoRoot()
	if err != nil {
		return filepath.Join(os.TempDir(), "testenv-prefect-"+version+".db")
	}
	return filepath.Join(root, ".venv", "prefect-"+version+"-template.db")
}

// Proc is the server process, nil for an external server.
func (s *PrefectServer) Proc() *Proc { return s.proc }

// Stop stops a server the harness started (SIGTERM, then SIGKILL to its
// group) and removes its home, then stops its PostgreSQL if it has one. An
// external server is left alone.
func (s *PrefectServer) Stop() {
	if s.proc == nil {
		return
	}
	s.proc.Stop(15 * time.Second)
	_ = os.RemoveAll(s.Home)
	if s.DB != nil {
		s.DB.Stop()
	}
}

// Logs returns the server's output (empty for an external server).
func (s *PrefectServer) Logs() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.Logs()
}

func (s *PrefectServer) waitHealthy(p *Proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := s.http.Get(s.URL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "true" {
				return nil
			}
			err = fmt.Errorf("health answered %d %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			logs := ""
			if p != nil {
				logs = tail(p.Logs(), 4000)
			}
			return errorf("prefect at %s not healthy within %s: %v; output:\n%s", s.URL, d, err, logs)
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.done
		}
		select {
		case <-exited:
			return errorf("prefect server exited (%v); output:\n%s", p.err, tail(p.Logs(), 4000))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *PrefectServer) readVersion() error {
	var v string
	if _, err := s.call(context.Background(), "GET", "/admin/version", nil, &v); err != nil {
		return err
	}
	s.Version = v
	return nil
}

// Call sends one request to Prefect's API (path relative to the API root,
// e.g. "/flows/") with body as JSON, decodes a 2xx answer into out (if not
// nil) and returns the status. A non-2xx answer is an error quoting the body.
func (s *PrefectServer) Call(ctx context.Context, method, path string, body, out any) (int, error) {
	return s.call(ctx, method, path, body, out)
}

// errBusy is Prefect's 503: its SQLite was locked by another writer.
var errBusy = errors.New("prefect busy (503)")

func (s *PrefectServer) call(ctx context.Context, method, path string, body, out any) (int, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, err
		}
	}
	// Prefect's SQLite answers 503 while another writer holds the lock, and a
	// shared server under a whole test run is busy; retry like Prefect's own
	// client, for up to about half a minute. A 503 rolled the write back, so
	// the retry cannot duplicate it.
	var status int
	var raw []byte
	err := retry.Do(ctx, 16, retry.Exponential{Base: 100 * time.Millisecond, Max: 3 * time.Second}, func(ctx context.Context) error {
		var err error
		if status, raw, err = s.once(ctx, method, path, payload); err != nil {
			return retry.Permanent(err)
		}
		if status == http.StatusServiceUnavailable {
			return errBusy
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBusy) {
		return status, err
	}
	if status/100 != 2 {
		return status, fmt.Errorf("prefect %s %s: %d %s", method, path, status, tail(string(raw), 2000))
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return status, fmt.Errorf("prefect %s %s: decoding %q: %v", method, path, tail(string(raw), 500), err)
		}
	}
	return status, nil
}

// once sends one request and reads the whole answer.
func (s *PrefectServer) once(ctx context.Context, method, path string, payload []byte) (int, []byte, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// Do is Call for tests: it fails the test on error.
func (s *PrefectServer) Do(tb testing.TB, method, path string, body, out any) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := s.call(ctx, method, path, body, out)
	must(tb, err, "prefect call")
	return st
}
