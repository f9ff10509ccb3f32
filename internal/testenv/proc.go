package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a child process the harness started: an api, a worker, a Redis or
// a Prefect server. Its stdout and stderr are captured together.
type Proc struct {
	Name string
	// URL is the base URL the process announced (api and worker), or the
	// address it was started on.
	URL string

	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{}
	err  error // exit status, valid once done is closed
}

// logBuffer is a concurrency-safe buffer.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// procOpts describes how to start a child process.
type procOpts struct {
	name string
	path string
	args []string
	env  []string
	dir  string
	// ready matches the line that says the process serves; its first group
	// is the URL. Nil: the process is considered started at once.
	ready   *regexp.Regexp
	timeout time.Duration
	// logFile, if set, also receives the output (Prefect's server log).
	logFile io.Writer
	// cred, if set, is the user the process runs as (PostgreSQL as root).
	cred *syscall.Credential
}

// startProc starts a process in its own process group, with SIGKILL as its
// parent-death signal, and waits for its ready line.
func startProc(o procOpts) (*Proc, error) {
	cmd := exec.Command(o.path, o.args...)
	cmd.Env = o.env
	cmd.Dir = o.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: o.cred}
	p := &Proc{Name: o.name, cmd: cmd, logs: &logBuffer{}, done: make(chan struct{})}

	var out io.Writer = p.logs
	if o.logFile != nil {
		out = io.MultiWriter(p.logs, o.logFile)
	}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	ready := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = io.WriteString(out, line+"\n")
			if !signalled && o.ready != nil {
				if m := o.ready.FindStringSubmatch(line); m != nil {
					ready <- m[1]
					signalled = true
				}
			}
		}
		_, _ = io.Copy(out, pr) // a line longer than the buffer: keep the rest
	}()

	if err := cmd.Start(); err != nil {
		return nil, errorf("start %s: %v", o.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		_ = pw.Close()
		// Done means the output is complete too: the last line (often the
		// error a process exits with) must be in Logs() when done is seen.
		<-drained
		close(p.done)
	}()
	if o.ready == nil {
		return p, nil
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	select {
	case u := <-ready:
		p.URL = u
		return p, nil
	case <-p.done:
		return nil, errorf("%s exited before it was ready (%v); output:\n%s", o.name, p.err, tail(p.Logs(), 4000))
	case <-time.After(o.timeout):
		p.Kill()
		return nil, errorf("%s not ready within %s; output:\n%s", o.name, o.timeout, tail(p.Logs(), 4000))
	}
}

// Logs returns everything the process wrote so far.
func (p *Proc) Logs() string { return p.logs.String() }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit status (nil for exit code 0); only valid
// after Done is closed.
func (p *Proc) ExitErr() error { return p.err }

// Signal sends sig to the process itself (not its group), as an orchestrator
// would.
func (p *Proc) Signal(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills its whole process group. It returns the exit status and whether the
// process exited on its own within grace.
func (p *Proc) Stop(grace time.Duration) (exitErr error, clean bool) {
	select {
	case <-p.done:
		return p.err, true
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		p.killGroup() // children it may have left
		return p.err, true
	case <-time.After(grace):
		p.Kill()
		return p.err, false
	}
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() {
	p.killGroup()
	<-p.done
}

func (p *Proc) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// WaitExit waits up to d for the process to exit on its own.
func (p *Proc) WaitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// cleanupProc stops p at the end of the test and prints its output if the
// test failed, so a failure shows what the server said.
func cleanupProc(tb testing.TB, p *Proc) {
	tb.Cleanup(func() {
		p.Stop(10 * time.Second)
		if tb.Failed() {
			tb.Logf("--- %s output (pid %d) ---\n%s", p.Name, p.Pid(), tail(p.Logs(), 20000))
		}
	})
}

// baseEnv is the small environment every child starts from: the parent's
// configuration variables (PREFECT_API_URL, REDIS_URL in a developer's shell)
// must not leak into a test's process.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func envList(m map[string]string) []string {
	out := baseEnv()
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// Binaries returns the directory holding the api and worker binaries, built
// once per test binary from this module (without -race: they are the system
// under test, not the test).
func Binaries() (string, error) {
	shared.buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			shared.buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "prefect-proxy-bin-")
		if err != nil {
			shared.buildErr = err
			return
		}
		atShutdown(func() { _ = os.RemoveAll(dir) })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), "./cmd/api", "./cmd/worker")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			shared.buildErr = errorf("go build ./cmd/api ./cmd/worker: %v\n%s", err, out)
			return
		}
		shared.binDir = dir
	})
	return shared.binDir, shared.buildErr
}

var (
	apiReady    = regexp.MustCompile(`api listening on (http://\S+)`)
	workerReady = regexp.MustCompile(`worker ops listening on (http://\S+)`)
)

// StartAPI builds (once) and starts cmd/api with env on a free loopback port
// (LISTEN_ADDR defaults to 127.0.0.1:0) and returns once it listens. p.URL is
// its base URL, e.g. http://127.0.0.1:41234. It is stopped when the test ends.
// Without REDIS_URL in env the api runs embedded Redis and an in-process worker.
func StartAPI(tb testing.TB, env map[string]string) *Proc {
	tb.Helper()
	p, err := startBinary("api", env, "LISTEN_ADDR", apiReady)
	must(tb, err, "start api")
	cleanupProc(tb, p)
	return p
}

// StartWorker builds (once) and starts cmd/worker with env (REDIS_URL is
// required by the worker; WORKER_LISTEN_ADDR defaults to 127.0.0.1:0).
func StartWorker(tb testing.TB, env map[string]string) *Proc {
	tb.Helper()
	p, err := startBinary("worker", env, "WORKER_LISTEN_ADDR", workerReady)
	must(tb, err, "start worker")
	cleanupProc(tb, p)
	return p
}

// StartAPIProcess is StartAPI without a test: the caller stops the process
// (for a package-wide api, register p.Stop with AtShutdown).
func StartAPIProcess(env map[string]string) (*Proc, error) {
	return startBinary("api", env, "LISTEN_ADDR", apiReady)
}

// StartWorkerProcess is StartWorker without a test.
func StartWorkerProcess(env map[string]string) (*Proc, error) {
	return startBinary("worker", env, "WORKER_LISTEN_ADDR", workerReady)
}

// StartBinaryIn starts the binary name ("api" or "worker") found in dir
// instead of the ones Binaries builds: a benchmark runs an older build next
// to this one with it. It is stopped when the test ends.
func StartBinaryIn(tb testing.TB, dir, name string, env map[string]string) *Proc {
	tb.Helper()
	addrVar, ready := "LISTEN_ADDR", apiReady
	if name == "worker" {
		addrVar, ready = "WORKER_LISTEN_ADDR", workerReady
	}
	p, err := startBinaryIn(dir, name, env, addrVar, ready)
	must(tb, err, "start "+name+" from "+dir)
	cleanupProc(tb, p)
	return p
}

func startBinary(name string, env map[string]string, addrVar string, ready *regexp.Regexp) (*Proc, error) {
	dir, err := Binaries()
	if err != nil {
		return nil, err
	}
	return startBinaryIn(dir, name, env, addrVar, ready)
}

func startBinaryIn(dir, name string, env map[string]string, addrVar string, ready *regexp.Regexp) (*Proc, error) {
	m := map[string]string{addrVar: "127.0.0.1:0", "LOG_FORMAT": "text", "LOG_LEVEL": "debug"}
	for k, v := range env {
		m[k] = v
	}
	// An empty working directory: the binaries read ./.env, and a developer's
	// .env must not change what a test runs.
	wd, err := os.MkdirTemp("", "prefect-proxy-"+name+"-")
	if err != nil {
		return nil, err
	}
	p, err := startProc(procOpts{
		name:    name,
		path:    filepath.Join(dir, name),
		env:     envList(m),
		dir:     wd,
		ready:   ready,
		timeout: 30 * time.Second,
	})
	if err != nil {
		_ = os.RemoveAll(wd)
		return nil, err
	}
	go func() { <-p.done; _ = os.RemoveAll(wd) }()
	return p, nil
}

// String makes a Proc readable in test messages.
func (p *Proc) String() string {
	return fmt.Sprintf("%s(pid %d, %s)", p.Name, p.Pid(), strings.TrimSpace(p.URL))
}
