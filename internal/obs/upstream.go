package obs

import (
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Upstream observes outgoing HTTP calls. A nil *Upstream records nothing.
type Upstream struct {
	hist *prometheus.HistogramVec
}

// UpstreamMetric is the name of the outgoing-call histogram.
const UpstreamMetric = "proxy_upstream_request_duration_seconds"

// NewUpstream registers the outgoing-call histogram on reg, or reuses the one
// already there: in embedded mode the api and its in-process worker share a
// registry, and both wire a Prefect client.
func NewUpstream(reg prometheus.Registerer) *Upstream {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    UpstreamMetric,
		Help:    "Latency of calls to Prefect and Django by upstream, route template, method and status (\"error\": no answer).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"upstream", "route", "method", "status"})
	return &Upstream{hist: registerOrReuse(reg, h)}
}

// Transport wraps next (nil: http.DefaultTransport) so every round trip is
// observed under upstream, with route(path) as its label. route must map
// paths onto a small set of templates; raw ids never become labels.
func (u *Upstream) Transport(next http.RoundTripper, upstream string, route func(path string) string) http.RoundTripper {
	if u == nil {
		return next
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return &instrumented{next: next, hist: u.hist, upstream: upstream, route: route}
}

type instrumented struct {
	next     http.RoundTripper
	hist     *prometheus.HistogramVec
	upstream string
	route    func(string) string
}

func (t *instrumented) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.hist.WithLabelValues(t.upstream, t.route(r.URL.Path), r.Method, status).Observe(time.Since(start).Seconds())
	return resp, err
}

// CloseIdleConnections passes through, so http.Client.CloseIdleConnections
// still reaches the wrapped transport.
func (t *instrumented) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// prefectWords are the static path segments of the Prefect API routes; every
// other segment is an id or a name and becomes a placeholder.
var prefectWords = map[string]bool{
	"api": true, "admin": true, "version": true, "health": true, "ready": true, "hello": true,
	"automations": true, "block_documents": true, "block_schemas": true, "block_types": true,
	"block_capabilities": true, "slug": true, "name": true, "filter": true, "count": true, "paginate": true,
	"create_flow_run": true, "deployments": true, "flow_run_states": true, "flow_runs": true, "flows": true,
	"graph": true, "graph-v2": true, "logs": true, "schedules": true, "set_state": true, "task_runs": true,
	"task_run_states": true, "work_pools": true, "workers": true, "queues": true, "work_queues": true,
	"variables": true, "events": true, "resume": true, "pause_deployment": true, "resume_deployment": true,
	"input": true, "labels": true, "concurrency_limits": true, "v2": true, "csrf-token": true,
	"checksum": true, "schema": true, "status": true, "get_scheduled_flow_runs": true, "bulk_delete": true,
}

// isUUID reports whether s is a UUID's 32 hex digits in groups of 8-4-4-4-12,
// each dash optional. (A regexp did this at ~1 µs a segment, on every call
// to Prefect.)
func isUUID(s string) bool {
	for _, n := range [...]int{8, 4, 4, 4, 12} {
		if len(s) < n {
			return false
		}
		for i := 0; i < n; i++ {
			if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		s = s[n:]
		if n != 12 && len(s) > 0 && s[0] == '-' {
			s = s[1:]
		}
	}
	return s == ""
}

// PrefectRoute maps a Prefect API path onto its template:
// /api/flow_runs/0b6e…/set_state → /api/flow_runs/:id/set_state,
// /api/block_types/slug/secret/block_documents/name/x → …/slug/:name/block_documents/name/:name.
func PrefectRoute(path string) string {
	b := make([]byte, 0, len(path)+8)
	for seg := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
		b = append(b, '/')
		switch {
		case seg == "":
		case isUUID(seg):
			b = append(b, ":id"...)
		case !prefectWords[seg]:
			b = append(b, ":name"...)
		default:
			b = append(b, seg...)
		}
	}
	if len(b) == 0 {
		return "/"
	}
	return string(b)
}

// FixedRoute labels every call with one route: for a client that only ever
// calls one configured URL (the relay's Django webhook).
func FixedRoute(route string) func(string) string {
	return func(string) string { return route }
}

// registerOrReuse adds c to reg, or returns the equal collector already there.
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
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
