// Package bench measures the proxy's read path: a fake Prefect that answers
// from a generated world (fast, or with a fixed per-call latency like Prefect
// on SQLite), a closed-loop load generator that records every latency, the
// Python proxy's one-by-one call pattern as a baseline; internal/testenv's
// SeedHistory builds the same world on a real Prefect. The Benchmark functions in
// bench_test.go print numbers; nothing here asserts a timing.
//
// Why Go benchmarks rather than a cmd/loadtest program: `go test -bench` runs
// the real httpapi handler in-process behind real loopback TCP with no extra
// binary to build, works with -cpuprofile for the profile we need when a target
// is missed, and b.ReportMetric prints p50/p99/req/s in the standard format
// that benchstat can compare across commits.
package bench
