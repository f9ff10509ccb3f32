package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// RedisServer is a real redis-server without persistence.
type RedisServer struct {
	URL  string // redis://127.0.0.1:PORT
	Addr string // 127.0.0.1:PORT
	proc *Proc
	dir  string
	args []string
}

// StartRedis starts redis-server (the Debian package; `make deps` installs
// it) on a free loopback port with persistence off; extra are more
// command-line options (`--replicaof host port`, `--cluster-enabled yes`).
// Stop it with Stop. Tests should prefer Redis(tb), which stops it for them.
func StartRedis(extra ...string) (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errorf("redis-server not found on PATH (install it: apt-get install -y redis-server, or run `make deps`)")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port can be taken in between
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "testenv-redis-")
		if err != nil {
			return nil, err
		}
		args := append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
		}, extra...)
		p, err := startProc(procOpts{name: "redis", path: bin, args: args, env: baseEnv(), dir: dir})
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := waitRedis(addr, p, 10*time.Second); err != nil {
			p.Kill()
			_ = os.RemoveAll(dir)
			lastErr = err
			continue
		}
		p.URL = "redis://" + addr
		return &RedisServer{URL: p.URL, Addr: addr, proc: p, dir: dir, args: args}, nil
	}
	return nil, lastErr
}

// Stop stops the server and removes its directory.
func (r *RedisServer) Stop() {
	r.proc.Stop(5 * time.Second)
	_ = os.RemoveAll(r.dir)
}

// Restart stops the server (SIGTERM: with --appendonly yes it writes its
// AOF out first), runs whileDown (if not nil), and starts it again on the
// same port and directory, so it reloads whatever it persisted.
func (r *RedisServer) Restart(whileDown func()) error {
	r.proc.Stop(10 * time.Second)
	if whileDown != nil {
		whileDown()
	}
	p, err := startProc(procOpts{name: "redis", path: r.proc.cmd.Path, args: r.args, env: baseEnv(), dir: r.dir})
	if err != nil {
		return err
	}
	if err := waitRedis(r.Addr, p, 30*time.Second); err != nil {
		p.Kill()
		return err
	}
	p.URL = r.URL
	r.proc = p
	return nil
}

// Proc is the redis-server process (to kill it in a test, say).
func (r *RedisServer) Proc() *Proc { return r.proc }

// Redis starts a fresh redis-server for this test and returns its URL. It is
// stopped when the test ends. A server costs a few milliseconds, so each test
// gets its own and tests never see each other's keys.
func Redis(tb testing.TB) string {
	tb.Helper()
	return RedisFull(tb).URL
}

// RedisFull is Redis returning the server handle. With -short (make unit)
// the calling test is skipped rather than starting a redis-server.
func RedisFull(tb testing.TB) *RedisServer {
	tb.Helper()
	if testing.Short() {
		tb.Skip("testenv: -short: not starting a redis-server")
	}
	r, err := StartRedis()
	must(tb, err, "start redis")
	tb.Cleanup(r.Stop)
	return r
}

// waitRedis pings addr until it answers PONG.
func waitRedis(addr string, p *Proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if err := ping(addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return errorf("redis at %s not ready: %v; output:\n%s", addr, err, tail(p.Logs(), 2000))
		}
		select {
		case <-p.done:
			return errorf("redis exited (%v); output:\n%s", p.err, tail(p.Logs(), 2000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
