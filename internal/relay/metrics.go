package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker side's Prometheus collectors (deliveries and the
// reconciler); the ingress has its own (newInboundMetrics), so a process that
// runs both — the api with its embedded worker — registers each collector
// once. A nil *Metrics is valid and records nothing (tests, tools).
type Metrics struct {
	deliveries *prometheus.CounterVec
	send       prometheus.Histogram
	endToEnd   prometheus.Histogram
	reconciled prometheus.Counter
}

// NewMetrics registers the worker side's collectors on reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliveries_total",
			Help: "Delivery attempts to Django by outcome (delivered, duplicate, stale, filtered, retry, rejected, archived, not_found).",
		}, []string{"result"}),
		send: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_django_request_seconds",
			Help:    "Latency of POSTs to Django's webhook.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15},
		}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_end_to_end_seconds",
			Help:    "From receipt of a notification to Django's 2xx.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 120, 600, 3600, 86400},
		}),
		reconciled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_reconciler_queued_total",
			Help: "Terminal states the reconciler found in Prefect and queued.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.send, m.endToEnd, m.reconciled)
	}
	return m
}

// inboundMetrics is the ingress's counter.
type inboundMetrics struct {
	inbound *prometheus.CounterVec
}

func newInboundMetrics(reg prometheus.Registerer) *inboundMetrics {
	m := &inboundMetrics{inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_inbound_total",
		Help: "Notifications received from Prefect by outcome (queued, duplicate, ignored, unauthorized, unparseable, future_timestamp, too_large, enqueue_failed).",
	}, []string{"result"})}
	if reg != nil {
		reg.MustRegister(m.inbound)
	}
	return m
}

func (m *inboundMetrics) in(result string) {
	if m != nil {
		m.inbound.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) delivery(result string) {
	if m != nil {
		m.deliveries.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) observeSend(d time.Duration) {
	if m != nil {
		m.send.Observe(d.Seconds())
	}
}

func (m *Metrics) observeEndToEnd(d time.Duration) {
	if m != nil {
		m.endToEnd.Observe(d.Seconds())
	}
}

func (m *Metrics) reconcileQueued(n int) {
	if m != nil {
		m.reconciled.Add(float64(n))
	}
}
