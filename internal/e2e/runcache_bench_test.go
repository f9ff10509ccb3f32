package e2e

// BenchmarkRunCache measures what the terminal-run cache saves: for each
// cached read route, the Prefect calls per request and the latency of the
// real api binary with RUN_CACHE=off and with the cache warm, one client at
// a time, against a real Prefect (the harness's, 50 finished runs seeded as
// Dalgo's pipelines look) and a real redis-server.
//
//	go build -o bin/withprefect ./internal/testenv/cmd/withprefect
//	bin/withprefect -- go test -run '^$' -bench RunCache -benchtime 1x -v ./internal/e2e/
//
// RUNCACHE_N sets the requests per route and side (default 200; the history
// gets a tenth). It prints numbers and never fails on them.

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func BenchmarkRunCache(b *testing.B) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("RUNCACHE_N")); err == nil && v > 0 {
		n = v
	}
	p := testenv.Prefect(b)
	for b.Loop() {
		h := p.SeedHistory(b, testenv.Unique("cache-bench"), 50, 3)
		for _, run := range h.Runs {
			p.WriteLogs(b, run, "", "bench line", 40, time.Now().Add(-time.Minute))
		}
		red := testenv.RedisFull(b)
		rdb := redis.NewClient(&redis.Options{Addr: red.Addr})
		defer rdb.Close()
		cachedCount, plainCount := countPrefect(b, p.URL), countPrefect(b, p.URL)
		cached := testenv.StartAPI(b, map[string]string{
			"PREFECT_API_URL": cachedCount.URL, "REDIS_URL": red.URL, "JOB_ENCRYPTION_KEY": testJobKey, "LOG_LEVEL": "warn",
			"RUN_CACHE": "on", "RUN_CACHE_SETTLE": "1ms", "RUN_CACHE_LOG_GRACE": "1ms",
		}).URL
		plain := testenv.StartAPI(b, map[string]string{
			"PREFECT_API_URL": plainCount.URL, "REDIS_URL": red.URL, "JOB_ENCRYPTION_KEY": testJobKey, "LOG_LEVEL": "warn",
			"RUN_CACHE": "off",
		}).URL
		if err := rdb.Set(context.Background(), runcache.LiveKey, "1", 0).Err(); err != nil {
			b.Fatal(err)
		}

		routes := []struct {
			name string
			path func(run string) string
			n    int
		}{
			{"poll (22)", func(r string) string { return "/proxy/flow_runs/" + r + "/poll" }, n},
			{"flow run (21)", func(r string) string { return "/proxy/flow_runs/" + r }, n},
			{"graph (28)", func(r string) string { return "/proxy/flow_runs/graph/" + r }, n},
			{"v1 logs (27)", func(r string) string { return "/proxy/flow_runs/v1/logs/" + r }, n},
			{"logs (26)", func(r string) string { return "/proxy/flow_runs/logs/" + r }, n},
			{"history of 50 (19)", func(string) string { return "/proxy/flow_runs?deployment_id=" + h.Deployment.ID }, max(n/10, 1)},
		}
		fmt.Printf("\nPrefect %s, %d requests per route and side, 1 client, cache warm\n", p.Version, n)
		fmt.Println("| route | uncached p50 / p99 (ms) | cached p50 / p99 (ms) | Prefect calls per request: uncached / cached |")
		fmt.Println("|---|---|---|---|")
		for _, rt := range routes {
			for _, run := range h.Runs { // warm the cache
				benchGet(b, cached+rt.path(run))
			}
			cachedCount.take()
			plainCount.take()
			un := timeReads(b, plain, rt.path, h.Runs, rt.n)
			_, unCalls := plainCount.take()
			ca := timeReads(b, cached, rt.path, h.Runs, rt.n)
			_, caCalls := cachedCount.take()
			fmt.Printf("| %s | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |\n", rt.name,
				ms(pct(un, 50)), ms(pct(un, 99)), ms(pct(ca, 50)), ms(pct(ca, 99)),
				float64(unCalls)/float64(rt.n), float64(caCalls)/float64(rt.n))
		}
	}
}

// timeReads makes n GETs of path over the runs in turn and returns their latencies.
func timeReads(b *testing.B, base string, path func(string) string, runs []string, n int) []time.Duration {
	out := make([]time.Duration, 0, n)
	for i := range n {
		out = append(out, benchGet(b, base+path(runs[i%len(runs)])))
	}
	return out
}

// benchGet reads url whole and fails unless it answers 200.
func benchGet(b *testing.B, url string) time.Duration {
	start := time.Now()
	resp, err := httpClient.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, body)
	}
	return time.Since(start)
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(min(i, len(s))-1, 0)]
}
