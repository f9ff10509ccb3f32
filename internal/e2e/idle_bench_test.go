package e2e

// BenchmarkIdleCPU measures what an idle deployment costs: the CPU time of
// the api, the worker and redis-server while nothing is asked of them, read
// from /proc/<pid>/stat (utime + stime) over IDLE_SECONDS (default 30) after
// a few seconds of settling. Shapes:
//
//   - worker: redis-server, an api and a worker (REDIS_URL set), relay off;
//   - worker+relay: the same with the relay on;
//   - embedded: the api alone (embedded Redis and an in-process worker, as
//     `make run` starts it).
//
//	go test -run '^$' -bench IdleCPU -benchtime 1x -v ./internal/e2e/
//
// IDLE_BASELINE_BIN=<dir> holds an older build's api and worker binaries:
// each shape is then measured with that build and with this one, one after
// the other, so both see the same machine load. It prints numbers and never
// fails on them.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// clockTicks is Linux's USER_HZ, the unit of utime and stime in /proc.
const clockTicks = 100

// cpuTicks is the user+system CPU time of pid so far, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it are fixed.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return utime + stime, nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// idleProc is a process whose idle CPU is measured.
type idleProc struct {
	role string
	pid  int
}

// measureIdle returns each process's CPU over d as a percentage of one core.
func measureIdle(tb testing.TB, procs []idleProc, d time.Duration) []float64 {
	tb.Helper()
	before := make([]int64, len(procs))
	for i, p := range procs {
		t, err := cpuTicks(p.pid)
		if err != nil {
			tb.Fatalf("%s: %v", p.role, err)
		}
		before[i] = t
	}
	start := time.Now()
	time.Sleep(d)
	elapsed := time.Since(start).Seconds()
	out := make([]float64, len(procs))
	for i, p := range procs {
		t, err := cpuTicks(p.pid)
		if err != nil {
			tb.Fatalf("%s: %v", p.role, err)
		}
		out[i] = float64(t-before[i]) / clockTicks / elapsed * 100
	}
	return out
}

// idleShape starts one idle deployment from the binaries in dir ("": this
// build) and returns its processes.
type idleShape struct {
	name  string
	start func(b *testing.B, dir string, prefectURL string) []idleProc
}

func startFrom(b *testing.B, dir, name string, env map[string]string) *testenv.Proc {
	b.Helper()
	if dir == "" {
		if name == "worker" {
			return testenv.StartWorker(b, env)
		}
		return testenv.StartAPI(b, env)
	}
	return testenv.StartBinaryIn(b, dir, name, env)
}

func withRedis(relay bool) func(b *testing.B, dir, prefectURL string) []idleProc {
	return func(b *testing.B, dir, prefectURL string) []idleProc {
		rs := testenv.RedisFull(b)
		env := map[string]string{"REDIS_URL": rs.URL, "JOB_ENCRYPTION_KEY": testJobKey,
			"PREFECT_API_URL": prefectURL, "LOG_LEVEL": "info"}
		if relay {
			env["PREFECT_NOTIFICATIONS_WEBHOOK_KEY"] = relayDjangoKey
			env["DJANGO_WEBHOOK_URL"] = "http://127.0.0.1:9/webhooks/v1/notification/"
		}
		api := startFrom(b, dir, "api", env)
		w := startFrom(b, dir, "worker", env)
		return []idleProc{{"worker", w.Pid()}, {"redis", rs.Proc().Pid()}, {"api", api.Pid()}}
	}
}

func BenchmarkIdleCPU(b *testing.B) {
	d := 30 * time.Second
	if v, err := strconv.Atoi(os.Getenv("IDLE_SECONDS")); err == nil && v > 0 {
		d = time.Duration(v) * time.Second
	}
	builds := []string{""}
	if dir := os.Getenv("IDLE_BASELINE_BIN"); dir != "" {
		builds = []string{dir, ""}
	}
	// Prefect is never called while idle; the readiness check may ask.
	prefect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer prefect.Close()
	shapes := []idleShape{
		{"worker", withRedis(false)},
		{"worker+relay", withRedis(true)},
		{"embedded", func(b *testing.B, dir, prefectURL string) []idleProc {
			api := startFrom(b, dir, "api", map[string]string{"PREFECT_API_URL": prefectURL, "LOG_LEVEL": "info"})
			return []idleProc{{"api (embedded Redis + worker)", api.Pid()}}
		}},
	}
	for _, sh := range shapes {
		for _, dir := range builds {
			b.Run(sh.name+"/build="+buildName(dir), func(b *testing.B) {
				for b.Loop() {
					procs := sh.start(b, dir, prefect.URL+"/api")
					time.Sleep(3 * time.Second) // start-up work done
					load := loadAvg()
					pct := measureIdle(b, procs, d)
					var parts []string
					for i, p := range procs {
						parts = append(parts, fmt.Sprintf("%s %.2f %%", p.role, pct[i]))
						b.ReportMetric(pct[i], strings.Fields(p.role)[0]+"-%core")
					}
					b.Logf("idle %s, build %s, over %s (load average %s): %s", sh.name, buildName(dir), d, load, strings.Join(parts, ", "))
				}
			})
		}
	}
}

func buildName(dir string) string {
	if dir == "" {
		return "this"
	}
	return "baseline"
}
