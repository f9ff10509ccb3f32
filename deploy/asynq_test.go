package deploy

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// pendingKey is the Redis list in which asynq keeps a queue's pending tasks
// (asynq's internal base.PendingKey), the list KEDA's redis scaler measures.
// TestPendingKeyIsAsynqs checks it against asynq itself.
func pendingKey(queue string) string { return "asynq:{" + queue + "}:pending" }

// startRedis runs a real redis-server on a free loopback port for one test.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found on PATH (scripts/deps.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	// Readiness wait, not a timing assertion: generous on a busy machine.
	deadline := time.Now().Add(20 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr
}

// The ScaledObject measures LLEN of pendingKey(queue): enqueue with asynq and
// see the task there, on the asynq version the service uses.
func TestPendingKeyIsAsynqs(t *testing.T) {
	t.Parallel()
	if got, want := require(t, "go.mod", "github.com/hibiken/asynq"), require(t, "../go.mod", "github.com/hibiken/asynq"); got != want {
		t.Fatalf("deploy/go.mod has asynq %s, the service %s: align them (go get github.com/hibiken/asynq@%s)", got, want, want)
	}
	addr := startRedis(t)
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: addr})
	defer client.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	for i, q := range []string{"critical", "default"} {
		for range i + 1 {
			if _, err := client.Enqueue(asynq.NewTask("probe", nil), asynq.Queue(q)); err != nil {
				t.Fatal(err)
			}
		}
		typ, err := rdb.Type(ctx, pendingKey(q)).Result()
		if err != nil || typ != "list" {
			t.Fatalf("%s: type %q (%v), want a list", pendingKey(q), typ, err)
		}
		if n, err := rdb.LLen(ctx, pendingKey(q)).Result(); err != nil || n != int64(i+1) {
			t.Errorf("LLEN %s = %d (%v), want %d pending tasks", pendingKey(q), n, err, i+1)
		}
	}
}

// require is the version of a module a go.mod requires.
func require(t *testing.T, gomodPath, path string) string {
	t.Helper()
	gomod, err := os.ReadFile(gomodPath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(path) + `\s+(v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatalf("%s does not require %s", gomodPath, path)
	}
	return string(m[1])
}
