package events

import (
	"math"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Sources of a handled event, the label of relay_events_received_total.
const (
	sourceLive     = "live"
	sourceBackfill = "backfill"
)

type metrics struct {
	leader     prometheus.Gauge
	connected  prometheus.Gauge
	lag        prometheus.Histogram
	cursor     *floatGauge
	reconnects prometheus.Counter
	received   *prometheus.CounterVec
}

// floatGauge is a gauge whose value the subscriber can read back.
type floatGauge struct {
	prometheus.Gauge
	v atomic.Uint64
}

func (g *floatGauge) Set(v float64) {
	g.v.Store(math.Float64bits(v))
	g.Gauge.Set(v)
}

func (m *metrics) cursorValue() float64 { return math.Float64frombits(m.cursor.v.Load()) }

// newMetrics registers the subscriber's collectors on reg (nil: none).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_events_leader",
			Help: "1 while this process holds the event-stream subscriber's lease (one process across all workers).",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_events_connected",
			Help: "1 while this process is connected to Prefect's event stream (/api/events/out).",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_events_lag_seconds",
			Help:    "From a live event's occurred time in Prefect to its receipt by the subscriber.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		cursor: &floatGauge{Gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_events_cursor_timestamp_seconds",
			Help: "Occurred time (unix seconds) of the newest event the subscriber handled: a backfill resumes from here.",
		})},
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_events_reconnects_total",
			Help: "Connections to Prefect's event stream that ended (or failed) and were retried.",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_events_received_total",
			Help: "Flow-run state events handled, by source (live: the websocket; backfill: /api/events/filter).",
		}, []string{"source"}),
	}
	m.received.WithLabelValues(sourceLive)
	m.received.WithLabelValues(sourceBackfill)
	if reg != nil {
		reg.MustRegister(m.leader, m.connected, m.lag, m.cursor.Gauge, m.reconnects, m.received)
	}
	return m
}
