// Package obs is the proxy's observability: the latency of every call to
// Prefect and Django (an instrumented http.RoundTripper), asynq queue and
// relay backlog gauges, per-dependency readiness (/readyz?verbose) and the
// optional METRICS_TOKEN guard. Every collector is registered on a registry
// the caller passes in; nothing here is global.
package obs
