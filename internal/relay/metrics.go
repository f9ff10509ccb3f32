package relay

import (
	"errors"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus collectors. A nil *Metrics is valid and
// records nothing (tests, tools).
type Metrics struct {
	inbound    *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	send       prometheus.Histogram
	endToEnd   prometheus.Histogram
	reconciled prometheus.Counter
}

// NewMetrics registers the relay collectors on reg. The api and the worker
// each register the ones they use on their own registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_inbound_total",
			Help: "Notifications received from Prefect by outcome (queued, duplicate, ignored, unauthorized, unparseable, too_large, enqueue_failed).",
		}, []string{"result"}),
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
	m.inbound = register(reg, m.inbound)
	m.deliveries = register(reg, m.deliveries)
	m.send = register(reg, m.send)
	m.endToEnd = register(reg, m.endToEnd)
	m.reconciled = register(reg, m.reconciled)
	return m
}

// register adds c to reg, or returns the collector already there: in
// embedded mode the api and its in-process worker share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil || reflect.ValueOf(reg).IsNil() {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *Metrics) in(result string) {
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

// Inbound counts an ingress outcome decided outside Accept (key, size).
func (m *Metrics) Inbound(result string) { m.in(result) }
