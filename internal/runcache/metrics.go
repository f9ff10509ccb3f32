package runcache

import "github.com/prometheus/client_golang/prometheus"

// metrics are the cache's Prometheus collectors.
type metrics struct {
	hits          *prometheus.CounterVec // kind
	misses        *prometheus.CounterVec // kind, reason
	stores        *prometheus.CounterVec // kind, result
	revalidations *prometheus.CounterVec // kind
	evictions     *prometheus.CounterVec // kind
	invalidations *prometheus.CounterVec // kind
	events        *prometheus.CounterVec // state_type
	errors        *prometheus.CounterVec // op
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_hits_total",
			Help: "Reads of finished flow runs answered from the run cache, by kind of answer.",
		}, []string{"kind"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_misses_total",
			Help: "Reads the run cache sent to Prefect, by kind and reason: stream (Prefect's event stream not live), " +
				"not_final (run not finished, or within its settle or log grace time), absent (not held; stored).",
		}, []string{"kind", "reason"}),
		stores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_stores_total",
			Help: "Attempts to store an answer, by kind and result: stored, stale (the stream reconnected meanwhile), " +
				"raced (a state event of the run arrived meanwhile), too_large.",
		}, []string{"kind", "result"}),
		revalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_revalidations_total",
			Help: "Entries of an earlier event-stream connection served again after the run's state read from Prefect " +
				"(or listed by the history) showed it unchanged, by kind.",
		}, []string{"kind"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_evictions_total",
			Help: "Entries evicted, oldest first, to keep the run cache within RUN_CACHE_MAX_ENTRIES and RUN_CACHE_MAX_BYTES, by kind.",
		}, []string{"kind"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_invalidations_total",
			Help: "Entries dropped because their run changed state (an event, or the proxy's own retry or delete), by kind.",
		}, []string{"kind"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_state_events_total",
			Help: "Flow-run state events the run cache was told of, by state type.",
		}, []string{"state_type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_run_cache_redis_errors_total",
			Help: "Redis failures of the run cache by operation (get, store, invalidate); reads then go to Prefect.",
		}, []string{"op"}),
	}
	reg.MustRegister(m.hits, m.misses, m.revalidations, m.stores, m.evictions, m.invalidations, m.events, m.errors)
	for _, k := range Kinds() {
		m.hits.WithLabelValues(string(k))
		for _, r := range []string{"stream", "not_final", "absent"} {
			m.misses.WithLabelValues(string(k), r)
		}
	}
	return m
}

func (m *metrics) hit(k Kind)                 { m.hits.WithLabelValues(string(k)).Inc() }
func (m *metrics) miss(k Kind, reason string) { m.misses.WithLabelValues(string(k), reason).Inc() }
