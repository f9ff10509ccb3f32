package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Result summarises one load run. Percentiles are exact (every latency is kept).
type Result struct {
	Requests  int
	Errors    int
	FirstErr  error
	Elapsed   time.Duration
	CPU       time.Duration   // user+system CPU time of this whole process during the run
	Latencies []time.Duration // sorted ascending
}

// CPUPerRequest is the process CPU time per request. With the load generator,
// the proxy and the fake upstream in one process, the difference between the
// proxy's and the direct figure is what the proxy itself costs per request —
// a number that stays put when other jobs on the machine make latencies jump.
func (r Result) CPUPerRequest() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Quantile returns the q-quantile latency (nearest rank), 0 when empty.
func (r Result) Quantile(q float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	i := int(q*float64(n)+0.5) - 1
	return r.Latencies[min(max(i, 0), n-1)]
}

// P50 is the median latency.
func (r Result) P50() time.Duration { return r.Quantile(0.50) }

// P99 is the 99th percentile latency.
func (r Result) P99() time.Duration { return r.Quantile(0.99) }

// RPS is the completed requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Merge combines results measured in rounds (elapsed times add up).
func Merge(rs ...Result) Result {
	var out Result
	for _, r := range rs {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Elapsed += r.Elapsed
		out.CPU += r.CPU
		out.Latencies = append(out.Latencies, r.Latencies...)
		if out.FirstErr == nil {
			out.FirstErr = r.FirstErr
		}
	}
	slices.Sort(out.Latencies)
	return out
}

// String is a one-line summary in milliseconds.
func (r Result) String() string {
	return fmt.Sprintf("n=%d err=%d p50=%.3fms p90=%.3fms p99=%.3fms max=%.3fms %.0f req/s cpu=%.1fµs/req",
		r.Requests, r.Errors, ms(r.P50()), ms(r.Quantile(0.9)), ms(r.P99()), ms(r.Quantile(1)), r.RPS(),
		float64(r.CPUPerRequest())/float64(time.Microsecond))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Run is a closed loop: clients goroutines each send one request, wait for
// the answer, and send the next, until requests have been sent in total.
// Every latency is recorded; a failed request counts as an error and its
// latency is not kept.
func Run(ctx context.Context, clients, requests int, do func(context.Context) error) Result {
	return run(ctx, clients, requests, 0, do)
}

// RunPaced is an open loop: request k is due at start + k/rate, whatever the
// answers to earlier ones; clients goroutines send them. A latency runs from
// the moment the request was due, so time spent waiting for a free client
// counts (no coordinated omission). Below the proxy's capacity this measures
// the latency a steady load sees, which a closed loop on a 2-core machine
// cannot: there, every client's next request queues behind everyone's CPU.
func RunPaced(ctx context.Context, clients, requests int, rate float64, do func(context.Context) error) Result {
	return run(ctx, clients, requests, rate, do)
}

func run(ctx context.Context, clients, requests int, rate float64, do func(context.Context) error) Result {
	clients = max(1, min(clients, requests))
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make([]int, clients)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	cpu0 := processCPU()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, requests/clients+1)
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= int64(requests) {
					break
				}
				t := time.Now()
				if rate > 0 {
					t = start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
					time.Sleep(time.Until(t))
				}
				if err := do(ctx); err != nil {
					errs[c]++
					once.Do(func() { firstErr = err })
					continue
				}
				mine = append(mine, time.Since(t))
			}
			lat[c] = mine
		}()
	}
	wg.Wait()
	r := Result{Elapsed: time.Since(start), CPU: processCPU() - cpu0, FirstErr: firstErr}
	for c := range lat {
		r.Latencies = append(r.Latencies, lat[c]...)
		r.Errors += errs[c]
	}
	r.Requests = len(r.Latencies) + r.Errors
	slices.Sort(r.Latencies)
	return r
}

// NewClient is an HTTP client that keeps a connection per concurrent client
// alive, so the benchmark measures requests, not TCP handshakes.
func NewClient() *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// Getter returns a request function that GETs url and expects a 200; the
// body is read to the end (a client pays for the whole answer).
func Getter(hc *http.Client, url string, header http.Header) func(context.Context) error {
	return RoundRobin(hc, []string{url}, header)
}

// RoundRobin is Getter over several URLs, taken in turn by successive requests.
func RoundRobin(hc *http.Client, urls []string, header http.Header) func(context.Context) error {
	var next atomic.Uint64
	return func(ctx context.Context) error {
		url := urls[(next.Add(1)-1)%uint64(len(urls))]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d (%d bytes)", url, resp.StatusCode, n)
		}
		return nil
	}
}
