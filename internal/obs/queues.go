package obs

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// RegisterQueueMetrics registers asynq's own queue collector (asynq_queue_size,
// asynq_queue_latency_seconds, asynq_tasks_enqueued_total{state}, ...) and the
// relay backlog on reg. Both read Redis at scrape time. Register them in the
// api only: every process sees the same queues, and one set of series per
// api replica is enough (the dashboard takes max by queue).
func RegisterQueueMetrics(reg prometheus.Registerer, insp *asynq.Inspector) error {
	if err := reg.Register(metrics.NewQueueMetricsCollector(insp)); err != nil {
		return err
	}
	return reg.Register(NewRelayBacklog(insp, 1000))
}

// RelayBacklog exports the relay's undelivered notifications: pending, retry
// and scheduled deliveries on the relay queue, and the age of the oldest.
type RelayBacklog struct {
	insp *asynq.Inspector
	// scan bounds how many retry and scheduled tasks one scrape reads to find
	// the oldest; the pending side comes from asynq's own queue latency.
	scan    int
	backlog *prometheus.Desc
	oldest  *prometheus.Desc
	up      *prometheus.Desc
	now     func() time.Time
}

// The relay backlog metric names.
const (
	RelayBacklogMetric = "relay_backlog"
	RelayOldestMetric  = "relay_oldest_undelivered_age_seconds"
)

// NewRelayBacklog reads the relay queue through insp at every scrape,
// looking at up to scan retry and scan scheduled tasks for the oldest.
func NewRelayBacklog(insp *asynq.Inspector, scan int) *RelayBacklog {
	return &RelayBacklog{
		insp: insp,
		scan: scan,
		backlog: prometheus.NewDesc(RelayBacklogMetric,
			"Undelivered notifications on the relay queue by state (pending, retry, scheduled).", []string{"state"}, nil),
		oldest: prometheus.NewDesc(RelayOldestMetric,
			"Age of the oldest undelivered notification (since the relay received it; 0: none). Retry and scheduled deliveries are sampled up to a bound per scrape.", nil, nil),
		up: prometheus.NewDesc("relay_backlog_scrape_ok",
			"1 when the relay backlog could be read from Redis at this scrape, else 0.", nil, nil),
		now: time.Now,
	}
}

// Describe implements prometheus.Collector.
func (b *RelayBacklog) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.backlog
	ch <- b.oldest
	ch <- b.up
}

// Collect implements prometheus.Collector.
func (b *RelayBacklog) Collect(ch chan<- prometheus.Metric) {
	pending, retry, scheduled, oldest, err := b.read()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(b.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(b.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(b.backlog, prometheus.GaugeValue, float64(pending), "pending")
	ch <- prometheus.MustNewConstMetric(b.backlog, prometheus.GaugeValue, float64(retry), "retry")
	ch <- prometheus.MustNewConstMetric(b.backlog, prometheus.GaugeValue, float64(scheduled), "scheduled")
	ch <- prometheus.MustNewConstMetric(b.oldest, prometheus.GaugeValue, oldest.Seconds())
}

func (b *RelayBacklog) read() (pending, retry, scheduled int, oldest time.Duration, err error) {
	// GetQueueInfo's error for an unknown queue is asynq-internal (not
	// asynq.ErrQueueNotFound): ask for the queue list first.
	queues, err := b.insp.Queues()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if !slices.Contains(queues, jobs.QueueRelay) {
		return 0, 0, 0, 0, nil // nothing was ever queued
	}
	info, err := b.insp.GetQueueInfo(jobs.QueueRelay)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	oldest = info.Latency // age of the oldest pending delivery
	now := b.now()
	consider := func(tasks []*asynq.TaskInfo) {
		for _, t := range tasks {
			var n struct {
				Received time.Time `json:"received"`
			}
			if json.Unmarshal(t.Payload, &n) == nil && !n.Received.IsZero() {
				if age := now.Sub(n.Received); age > oldest {
					oldest = age
				}
			}
		}
	}
	if info.Retry > 0 {
		tasks, err := b.insp.ListRetryTasks(jobs.QueueRelay, asynq.PageSize(b.scan))
		if err != nil {
			return 0, 0, 0, 0, err
		}
		consider(tasks)
	}
	if info.Scheduled > 0 {
		tasks, err := b.insp.ListScheduledTasks(jobs.QueueRelay, asynq.PageSize(b.scan))
		if err != nil {
			return 0, 0, 0, 0, err
		}
		consider(tasks)
	}
	return info.Pending, info.Retry, info.Scheduled, oldest, nil
}
