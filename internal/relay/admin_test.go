package relay

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// On a fresh install the relay queue does not exist yet: asynq answers its
// internal not-found error (not ErrQueueNotFound) there, which must read as
// "no dead letters". Against a real redis-server, as in production.
func TestAdminOnFreshRedis(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	admin := &Admin{Inspector: asynq.NewInspectorFromRedisClient(rdb)}

	check := func(t *testing.T) {
		t.Helper()
		items, total, err := admin.List(1, 100)
		if err != nil || total != 0 || items == nil || len(items) != 0 {
			t.Fatalf("List = %v, %d, %v; want an empty, non-nil list", items, total, err)
		}
		if n, err := admin.ReplayAll(); err != nil || n != 0 {
			t.Fatalf("ReplayAll = %d, %v; want 0, nil", n, err)
		}
		if err := admin.Replay("nope"); err != ErrNotFound {
			t.Fatalf("Replay(unknown) = %v, want ErrNotFound", err)
		}
	}
	t.Run("no queue at all", check)

	// Once a delivery has been queued the queue exists; still none archived.
	q := asynq.NewClientFromRedisClient(rdb)
	if ok, err := Enqueue(context.Background(), q, note("Completed", t0), 3); err != nil || !ok {
		t.Fatal(ok, err)
	}
	t.Run("queue with nothing archived", check)
}
