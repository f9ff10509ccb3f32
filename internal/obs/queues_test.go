package obs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func TestQueueMetricsFromRealRedis(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	reg := prometheus.NewRegistry()
	if err := RegisterQueueMetrics(reg, insp); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	backlog := NewRelayBacklog(insp, 100)
	backlog.now = func() time.Time { return now }

	// Nothing queued yet: a zero backlog, not an error.
	if err := testutil.CollectAndCompare(backlog, strings.NewReader(`
# HELP relay_backlog Undelivered notifications on the relay queue by state (pending, retry, scheduled).
# TYPE relay_backlog gauge
relay_backlog{state="pending"} 0
relay_backlog{state="retry"} 0
relay_backlog{state="scheduled"} 0
`), RelayBacklogMetric); err != nil {
		t.Fatal(err)
	}

	client := asynq.NewClientFromRedisClient(rdb)
	notification := func(received time.Time) []byte {
		b, _ := json.Marshal(map[string]any{"flow_run_id": "r", "state": "Completed", "received": received})
		return b
	}
	enqueue := func(queue string, payload []byte, opts ...asynq.Option) {
		t.Helper()
		if _, err := client.Enqueue(asynq.NewTask("relay:deliver", payload), append(opts, asynq.Queue(queue))...); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(jobs.QueueRelay, notification(now.Add(-time.Minute)))
	enqueue(jobs.QueueRelay, notification(now.Add(-time.Minute)))
	// A delivery waiting for its next attempt, received two hours ago: the oldest.
	enqueue(jobs.QueueRelay, notification(now.Add(-2*time.Hour)), asynq.ProcessIn(time.Hour))
	enqueue(jobs.QueueCritical, []byte("{}"))

	if err := testutil.CollectAndCompare(backlog, strings.NewReader(`
# HELP relay_backlog Undelivered notifications on the relay queue by state (pending, retry, scheduled).
# TYPE relay_backlog gauge
relay_backlog{state="pending"} 2
relay_backlog{state="retry"} 0
relay_backlog{state="scheduled"} 1
`), RelayBacklogMetric); err != nil {
		t.Fatal(err)
	}
	age := gaugeValue(t, backlog, RelayOldestMetric)
	if age < (2*time.Hour).Seconds() || age > (2*time.Hour+time.Minute).Seconds() {
		t.Errorf("oldest undelivered age %.0fs, want about 2h", age)
	}

	// asynq's own collector, on the injected registry: sizes per queue.
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "asynq_queue_size" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if got[jobs.QueueRelay] != 3 || got[jobs.QueueCritical] != 1 {
		t.Errorf("asynq_queue_size = %v, want relay 3 and %s 1", got, jobs.QueueCritical)
	}
}

func gaugeValue(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not collected", name)
	return 0
}
