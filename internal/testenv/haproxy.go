package testenv

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// LoadBalancer is a real HAProxy (Debian's haproxy package; `make deps`
// installs it) balancing round-robin over api processes, with a /readyz
// health check every 500 ms so a dead api leaves the rotation within about a
// second, and connection failures retried on another api.
type LoadBalancer struct {
	URL  string // http://127.0.0.1:PORT
	proc *Proc
}

// HAProxy starts a load balancer in front of backends (base URLs such as
// http://127.0.0.1:41234) on a free loopback port, with a config generated
// here; it stops when the test ends.
func HAProxy(tb testing.TB, backends []string) *LoadBalancer {
	tb.Helper()
	lb, err := StartHAProxy(backends)
	must(tb, err, "start haproxy")
	cleanupProc(tb, lb.proc)
	return lb
}

// StartHAProxy is HAProxy without a test: the caller stops it with Stop.
func StartHAProxy(backends []string) (*LoadBalancer, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			return nil, errorf("haproxy not found (install it: apt-get install -y haproxy, or run `make deps`)")
		}
		bin = "/usr/sbin/haproxy"
	}
	var servers []string
	for i, b := range backends {
		u, err := url.Parse(b)
		if err != nil || u.Host == "" {
			return nil, errorf("backend %q is not a URL", b)
		}
		servers = append(servers, fmt.Sprintf("  server api%d %s check", i, u.Host))
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "testenv-haproxy-")
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := strings.Join([]string{
			"global",
			"  maxconn 2000",
			"defaults",
			"  mode http",
			"  timeout connect 2s",
			"  timeout client 60s",
			"  timeout server 60s",
			"  retries 3",
			"  option redispatch",
			"frontend proxy",
			"  bind " + addr,
			"  default_backend apis",
			"backend apis",
			"  balance roundrobin",
			"  option httpchk GET /readyz",
			"  http-check expect status 200",
			"  default-server inter 500ms fall 2 rise 1",
		}, "\n") + "\n" + strings.Join(servers, "\n") + "\n"
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		// -db: stay in the foreground; -W is not needed for one process.
		p, err := startProc(procOpts{name: "haproxy", path: bin, args: []string{"-db", "-f", cfg}, env: baseEnv(), dir: dir})
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		go func() { <-p.done; _ = os.RemoveAll(dir) }()
		if err := waitListening(addr, p, 10*time.Second); err != nil {
			p.Kill()
			lastErr = err
			continue
		}
		p.URL = "http://" + addr
		return &LoadBalancer{URL: p.URL, proc: p}, nil
	}
	return nil, lastErr
}

// Stop stops HAProxy.
func (l *LoadBalancer) Stop() { l.proc.Stop(5 * time.Second) }

// Proc is the haproxy process.
func (l *LoadBalancer) Proc() *Proc { return l.proc }

func waitListening(addr string, p *Proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errorf("haproxy at %s not listening: %v; output:\n%s", addr, err, tail(p.Logs(), 2000))
		}
		select {
		case <-p.done:
			return errorf("haproxy exited (%v); output:\n%s", p.err, tail(p.Logs(), 2000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
