package config

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Program names a binary, for the variables it reads.
type Program uint8

// The binaries.
const (
	API Program = 1 << iota
	Worker
	RelaySetup

	all = API | Worker | RelaySetup
)

// Var is one environment variable: its name, its default as it would be
// written in the environment ("" when unset means "none" or is computed, as
// Note says), and what it means. Load reads exactly these names, and an
// unset variable behaves as if set to Default (config_test.go holds Load to
// both); --help prints them.
type Var struct {
	Name    string
	Default string
	// Note stands in the default column when Default is "" (a computed or
	// conditional default).
	Note  string
	Usage string
	For   Program
}

// Vars is the table of every variable, in the order --help lists them.
func Vars() []Var {
	return []Var{
		{Name: "LISTEN_ADDR", Default: ":8085", Usage: "address the api serves HTTP on (host:port; an empty host means every interface)", For: API},
		{Name: "WORKER_LISTEN_ADDR", Default: ":8086", Usage: "address of the worker's ops port (/livez, /readyz, /metrics)", For: Worker},
		{Name: "PREFECT_API_URL", Default: "http://127.0.0.1:4200/api", Usage: "Prefect API root", For: all},
		{Name: "PREFECT_API_TIMEOUT", Default: "20", Usage: "seconds per Prefect request (or a duration like 5s); a read route answers within it (20: a slow Prefect gets a 504 before Django's own 30 s timeout)", For: all},
		{Name: "PREFECT_API_AUTH_STRING", Note: "none", Usage: "Prefect basic auth, user:pass", For: all},
		{Name: "PREFECT_API_KEY", Note: "none", Usage: "Prefect bearer key", For: all},
		{Name: "REDIS_URL", Note: "embedded", Usage: "redis://, rediss:// or redis-sentinel:// URL of the job queue; unset: the api runs an in-memory Redis and an in-process worker (not durable); required by worker", For: API | Worker},
		{Name: "REDIS_WAIT_REPLICAS", Default: "1", Usage: "replicas that must hold a queued job or notification before the api acknowledges it (Redis WAIT; at most those connected; 0: off)", For: API | Worker},
		{Name: "REDIS_WAIT_TIMEOUT", Default: "1s", Usage: "how long the api waits for those replicas; past it the answer is 503", For: API | Worker},
		{Name: "JOB_WAIT_TIMEOUT", Default: "25s", Usage: "how long a synchronous write route waits for its job; at least PREFECT_API_TIMEOUT", For: API},
		{Name: "JOB_ATTEMPT_TIMEOUT", Default: "5m", Usage: "how long one attempt of a write job may run in a worker before it is cut off and retried; at least PREFECT_API_TIMEOUT", For: API | Worker},
		{Name: "HTTP_IDLE_TIMEOUT", Default: "90s", Usage: "closes a keep-alive connection (api and worker ops port) idle this long", For: API | Worker},
		{Name: "JOB_RETENTION", Default: "24h", Usage: "how long job results and idempotency keys are kept", For: API | Worker},
		{Name: "WORKER_CONCURRENCY", Default: "10", Usage: "parallel write jobs per worker process (queues critical and default)", For: API | Worker},
		{Name: "WORKER_ADAPTIVE_LIMIT", Default: "on", Usage: "on: a worker adapts how many write jobs call Prefect at once (AIMD: 503, 429 and timeouts cut it, fast successes raise it, WORKER_CONCURRENCY caps it); off: always WORKER_CONCURRENCY", For: API | Worker},
		{Name: "RELAY_CONCURRENCY", Default: "10", Usage: "parallel relay deliveries and reconciler runs per worker process, in their own pool so a slow Django never holds a write job's slot (unused while the relay is off)", For: API | Worker},
		{Name: "WORKER_POLL_INTERVAL", Default: "1s", Usage: "how long an idle worker waits for a wake-up before it looks for jobs anyway (whoever queues a job wakes the workers at once; this bounds the delay of a lost wake-up)", For: API | Worker},
		{Name: "JOB_RETRY_WINDOW", Default: "30m", Usage: "how long a write job keeps retrying a retryable Prefect failure (5xx, timeout, refused connection), counted from when it was queued; backoff is capped at 50 s (60 s with jitter)", For: API | Worker},
		{Name: "JOB_MAX_ATTEMPTS", Default: "100", Usage: "cap on a write job's attempts on top of JOB_RETRY_WINDOW (100 covers a window of about 75 min); raise it with a longer window", For: API | Worker},
		{Name: "JOB_ENCRYPTION_KEY", Note: "random if embedded", Usage: "32 random bytes, base64, sealing job payloads in Redis; required with REDIS_URL", For: API | Worker},
		{Name: "PROXY_API_TOKEN", Note: "none", Usage: "if set, Authorization: Bearer <token> is required on /proxy, /jobs, /delete-a-block", For: API},
		{Name: "ADMIN_TOKEN", Note: "none", Usage: "if set, guards /monitoring/ and /admin/relay (basic auth: any user, this as password); unset: they are off", For: API},
		{Name: "METRICS_TOKEN", Note: "none", Usage: "if set, /metrics (api and worker ops port) requires Authorization: Bearer <token>; unset: open", For: API | Worker},
		{Name: "PREFECT_NOTIFICATIONS_WEBHOOK_KEY", Note: "none", Usage: "the key Django checks; the relay sends it to Django. Unset: the relay is off (no ingress, deliveries or reconciler)", For: all},
		{Name: "RELAY_INBOUND_KEY", Note: "PREFECT_NOTIFICATIONS_WEBHOOK_KEY", Usage: "the key Prefect must send to the relay in X-Notification-Key", For: all},
		{Name: "DJANGO_WEBHOOK_URL", Default: "http://127.0.0.1:8002/webhooks/v1/notification/", Usage: "where the relay delivers notifications", For: API | Worker},
		{Name: "RELAY_STATES", Default: "Pending,Running,Completed,Cancelled,Failed,Crashed,TimedOut", Usage: "flow-run states the relay forwards", For: all},
		{Name: "RELAY_RECONCILE_INTERVAL", Default: "30s", Usage: "period of the relay's reconciler (0: off); unset, it runs only once relay-setup has recorded the switch in Redis", For: API | Worker},
		{Name: "RELAY_EVENTS", Default: "on", Usage: "read Prefect's event stream (/api/events/out, one subscriber across workers, backfill from /api/events/filter) as a relay source: on or off (on has no effect while the relay is off)", For: API | Worker},
		{Name: "RELAY_RETRY_SCHEDULE", Default: "5s,30s,2m,10m,30m,1h", Usage: "delays between delivery attempts; the last repeats until 24h", For: API | Worker},
		{Name: "RUN_CACHE", Note: "on when the event stream is on", Usage: "on or off: answer reads of finished flow runs (poll, flow run, graph, logs, history's final states) from Redis, only while Prefect's event stream is connected", For: API | Worker},
		{Name: "RUN_CACHE_MAX_ENTRIES", Default: "10000", Usage: "entries the run cache holds at most; past it the oldest are evicted", For: API | Worker},
		{Name: "RUN_CACHE_MAX_BYTES", Default: "64MiB", Usage: "bytes the run cache holds at most (a number, or with KiB, MiB, GiB); past it the oldest are evicted; an answer over an eighth of it is not cached", For: API | Worker},
		{Name: "RUN_CACHE_TTL", Default: "1h", Usage: "lifetime of a run cache entry: the bound on serving a change Prefect emits no state event for (a run deleted outside the proxy)", For: API | Worker},
		{Name: "RUN_CACHE_SETTLE", Default: "1m", Usage: "how long after a run ended its graph, final state and history row may be cached (Prefect records task-run states from events, after the run's own)", For: API | Worker},
		{Name: "RUN_CACHE_LOG_GRACE", Default: "5m", Usage: "how long after a run ended its logs may be cached (late log lines keep arriving)", For: API | Worker},
		{Name: "PREFECT_DEFAULT_WORK_POOL", Default: "default-agent-pool", Usage: "work pool of new deployments", For: API | Worker},
		{Name: "PREFECT_DEFAULT_WORK_QUEUE", Default: "ddp", Usage: "work queue of new deployments", For: API | Worker},
		{Name: "FLOW_REPO_URL", Default: "https://github.com/DalgoT4D/prefect-proxy.git", Usage: "git repository in new deployments' pull steps", For: API | Worker},
		{Name: "PREFECT_PROXY_GIT_BRANCH", Default: "main", Usage: "branch of FLOW_REPO_URL", For: API | Worker},
		{Name: "DEPLOYMENT_ENTRYPOINT", Default: "proxy/prefect_flows_runner.py:deployment_schedule_flow_v5", Usage: "entrypoint of new deployments", For: API | Worker},
		{Name: "LOG_LEVEL", Default: "info", Usage: "trace, debug, info, warn or error", For: API | Worker},
		{Name: "LOG_FORMAT", Default: "json", Usage: "json or text", For: API | Worker},
		{Name: "RELAY_PUBLIC_URL", Note: "none", Usage: "the relay's URL as Prefect reaches it (the -url default)", For: RelaySetup},
	}
}

// PrintVars writes the variables p reads as an aligned table, for --help.
func PrintVars(w io.Writer, p Program) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	for _, v := range Vars() {
		if v.For&p == 0 {
			continue
		}
		def := v.Default
		if def == "" {
			def = "(" + v.Note + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Usage)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nVariables are read from the environment, then from ./.env; the environment wins.")
}

// defaultOf is the table's default of name; Load's reads go through it.
func defaultOf(name string) string {
	for _, v := range Vars() {
		if v.Name == name {
			return v.Default
		}
	}
	panic("config: " + name + " is not in Vars()") // a programming error, caught by config_test.go
}

// withDefaults answers the table's default for a variable that is unset.
func withDefaults(getenv func(string) string) func(string) string {
	return func(k string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return defaultOf(k)
	}
}
