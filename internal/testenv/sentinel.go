package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name the harness's Sentinels monitor.
const SentinelMaster = "proxy-primary"

// SentinelSet is a Redis primary, one replica and three Sentinels (quorum 2),
// all real redis-server processes on loopback ports, persistence off. A
// primary is declared down after DownAfter without an answer.
type SentinelSet struct {
	// URL is what REDIS_URL is set to:
	// redis-sentinel://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C?master=proxy-primary
	URL       string
	Primary   *RedisServer
	Replica   *RedisServer
	Sentinels []*Proc
	// SentinelAddrs are the Sentinels' host:port.
	SentinelAddrs []string
	DownAfter     time.Duration
}

// Sentinel starts a primary, a replica synced to it and three Sentinels
// agreeing on it; everything stops when the test ends. Sentinel mode is
// `redis-server <conf> --sentinel` (the same binary as Debian's
// redis-sentinel package ships).
func Sentinel(tb testing.TB) *SentinelSet {
	tb.Helper()
	s := &SentinelSet{DownAfter: time.Second}
	var err error
	s.Primary, err = StartRedis()
	must(tb, err, "start primary")
	tb.Cleanup(s.Primary.Stop)
	s.Replica, err = StartRedis("--replicaof", "127.0.0.1", portOf(s.Primary.Addr))
	must(tb, err, "start replica")
	tb.Cleanup(s.Replica.Stop)
	must(tb, waitInfo(s.Replica.Addr, "master_link_status:up", 15*time.Second), "replica sync")
	must(tb, waitInfo(s.Primary.Addr, "connected_slaves:1", 15*time.Second), "primary sees its replica")

	bin, err := exec.LookPath("redis-server")
	must(tb, err, "redis-server")
	for i := 0; i < 3; i++ {
		p, addr, err := s.startSentinel(bin)
		must(tb, err, "start sentinel")
		cleanupProc(tb, p)
		s.Sentinels = append(s.Sentinels, p)
		s.SentinelAddrs = append(s.SentinelAddrs, addr)
	}
	s.URL = "redis-sentinel://" + strings.Join(s.SentinelAddrs, ",") + "?master=" + SentinelMaster
	// Every Sentinel must know the replica and its two peers before a
	// failover can be agreed on.
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range s.SentinelAddrs {
		for {
			info, err := command(a, "SENTINEL", "MASTER", SentinelMaster)
			if err == nil && fieldOf(info, "num-slaves") == "1" && fieldOf(info, "num-other-sentinels") == "2" {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("testenv: sentinel %s does not see the replica and its peers: %v %v", a, info, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s
}

func (s *SentinelSet) startSentinel(bin string) (*Proc, string, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		dir, err := os.MkdirTemp("", "testenv-sentinel-")
		if err != nil {
			return nil, "", err
		}
		// Sentinel rewrites its config file: it must be writable.
		conf := filepath.Join(dir, "sentinel.conf")
		ms := strconv.Itoa(int(s.DownAfter / time.Millisecond))
		body := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + dir,
			"loglevel notice",
			"sentinel monitor " + SentinelMaster + " 127.0.0.1 " + portOf(s.Primary.Addr) + " 2",
			"sentinel down-after-milliseconds " + SentinelMaster + " " + ms,
			"sentinel failover-timeout " + SentinelMaster + " 10000",
			"sentinel parallel-syncs " + SentinelMaster + " 1",
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil, "", err
		}
		p, err := startProc(procOpts{name: "sentinel", path: bin, args: []string{conf, "--sentinel"}, env: baseEnv(), dir: dir})
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, "", err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := waitRedis(addr, p, 10*time.Second); err != nil {
			p.Kill()
			_ = os.RemoveAll(dir)
			lastErr = err
			continue
		}
		p.URL = addr
		go func() { <-p.done; _ = os.RemoveAll(dir) }()
		return p, addr, nil
	}
	return nil, "", lastErr
}

// MasterAddr is the primary's address according to the first Sentinel that
// answers.
func (s *SentinelSet) MasterAddr() (string, error) {
	var lastErr error
	for _, a := range s.SentinelAddrs {
		r, err := command(a, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
		if err == nil && len(r) == 2 {
			return net.JoinHostPort(r[0], r[1]), nil
		}
		lastErr = fmt.Errorf("%v %v", r, err)
	}
	return "", lastErr
}

// WaitFailover waits up to d until the Sentinels name a primary other than
// old and that server answers as a master; it returns the new address.
func (s *SentinelSet) WaitFailover(old string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for {
		addr, err := s.MasterAddr()
		if err == nil && addr != old {
			if info, err := command(addr, "ROLE"); err == nil && len(info) > 0 && info[0] == "master" {
				return addr, nil
			}
		}
		if time.Now().After(deadline) {
			return "", errorf("no failover from %s within %s (sentinels say %q, %v)", old, d, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// waitInfo waits until INFO on addr contains want.
func waitInfo(addr, want string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		r, err := command(addr, "INFO")
		if err == nil && len(r) == 1 && strings.Contains(r[0], want) {
			return nil
		}
		if time.Now().After(deadline) {
			return errorf("%s: INFO never showed %q (%v)", addr, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fieldOf reads a field of a flat [k1, v1, k2, v2, ...] reply.
func fieldOf(kv []string, k string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == k {
			return kv[i+1]
		}
	}
	return ""
}

// Command sends one command to the Redis (or Sentinel) at addr and returns
// its reply flattened to strings (nested arrays are flattened, nil is "").
// It is the harness's own tiny client, so test set-up does not depend on the
// client the code under test uses.
func Command(addr string, args ...string) ([]string, error) { return command(addr, args...) }

func command(addr string, args ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	var out []string
	if err := readReply(bufio.NewReader(c), &out); err != nil {
		return nil, err
	}
	return out, nil
}

func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		*out = append(*out, line[1:])
	case '-':
		return errorf("redis: %s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			*out = append(*out, "")
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		*out = append(*out, string(buf[:n]))
	case '*':
		n, _ := strconv.Atoi(line[1:])
		for i := 0; i < n; i++ {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return errorf("unexpected reply %q", line)
	}
	return nil
}
