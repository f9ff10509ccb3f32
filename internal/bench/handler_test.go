package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// inMemory serves a request with an http.Handler, without a network.
type inMemory struct{ h http.Handler }

func (m inMemory) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.ContentLength = int64(rec.Body.Len())
	return resp, nil
}

// BenchmarkPollHandler is the proxy's own work per poll (route 22), on one
// goroutine, with no network on either side: the api's handler as cmd/api
// wires it (gin, middleware, Prometheus, JSON access log to io.Discard), the
// proxy.Service and the prefect.Client with its instrumented transport,
// whose HTTP exchange is replaced by the fast fake's handler in memory. What
// it leaves out (serving the incoming connection, the outgoing one's
// transport) is net/http's and shows in BenchmarkPoll's cpu-us/req. cpu-us/op
// (the process's CPU time, GC included) and allocs/op are the numbers to
// compare across commits:
//
//	go test -run '^$' -bench PollHandler -benchmem -count 5 ./internal/bench/
func BenchmarkPollHandler(b *testing.B) {
	w := NewWorld(historyRuns, tasksPerRun)
	reg := prometheus.NewRegistry()
	u, _ := url.Parse("http://prefect.invalid/api")
	pc := prefect.New(prefect.Config{BaseURL: u, HTTPClient: &http.Client{Transport: inMemory{NewFake(w, 0)}},
		Instrument: func(rt http.RoundTripper) http.RoundTripper {
			return obs.NewUpstream(reg).Transport(rt, "prefect", obs.PrefectRoute)
		}})
	log := logging.New(io.Discard, "info", "json")
	h := httpapi.New(httpapi.Deps{Log: log, Proxy: proxy.New(pc, log), Metrics: httpapi.NewMetrics(reg)})
	reqs := make([]*http.Request, len(w.order))
	for i, id := range w.order {
		reqs[i] = httptest.NewRequest("GET", "/proxy/flow_runs/"+id+"/poll", nil)
		reqs[i].Header.Set("x-ddp-org", "bench-org")
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, reqs[i%len(reqs)])
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	// CPU time rather than ns/op: on a busy machine the wall clock counts
	// the time other processes held the cores.
	b.ReportMetric(us(processCPU()-cpu0)/float64(b.N), "cpu-us/op")
}
