// Package config turns the environment (and an optional ./.env file) into a
// typed Config. Each default is a named constant next to what it configures
// (prefect, proxy, jobs) or below, stated once; Load reports the first bad
// variable by name, then validate the first broken cross-field rule, so a
// misconfigured process fails with one clear line.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// Config is everything the api and worker processes read from the environment.
type Config struct {
	ListenAddr       string
	WorkerListenAddr string

	PrefectURL        *url.URL
	PrefectTimeout    time.Duration
	PrefectAuthString string // "user:pass" for Prefect's basic auth
	PrefectAPIKey     string // bearer key

	RedisURL string // empty: embedded miniredis + in-process worker
	// RedisWaitReplicas is how many replicas must have a write (Redis WAIT)
	// before the api acknowledges it (202, 200): at most as many as are
	// connected to the primary, none without replicas; 0 turns it off.
	RedisWaitReplicas int
	// RedisWaitTimeout bounds that wait; past it the api answers 503.
	RedisWaitTimeout time.Duration

	JobWaitTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection (api and worker ops
	// port) that sends no new request for this long.
	HTTPIdleTimeout time.Duration
	// JobAttemptTimeout bounds one attempt of a write job in a worker.
	JobAttemptTimeout time.Duration
	JobRetention      time.Duration
	WorkerConcurrency int
	// WorkerAdaptiveLimit: write jobs calling Prefect at once follow an
	// adaptive limit (internal/adaptive) capped by WorkerConcurrency.
	WorkerAdaptiveLimit bool
	// RelayConcurrency is the size of the worker's second pool, serving only
	// relay deliveries and the reconciler.
	RelayConcurrency int
	// WorkerPollInterval is how long an idle worker waits for a wake-up
	// before it asks Redis for jobs anyway (jobs.Wakeup).
	WorkerPollInterval time.Duration
	JobMaxAttempts     int
	// JobRetryWindow is how long a write job retries a retryable failure,
	// counted from when it was queued.
	JobRetryWindow   time.Duration
	JobEncryptionKey []byte // 32 bytes
	// JobKeyGenerated is true when no key was configured and one was made up
	// for embedded mode.
	JobKeyGenerated bool

	ProxyAPIToken string
	AdminToken    string
	// MetricsToken, if set, is the bearer token /metrics requires (api and
	// worker ops port).
	MetricsToken string

	NotificationKey        string // PREFECT_NOTIFICATIONS_WEBHOOK_KEY, sent to Django
	RelayInboundKey        string // what Prefect must send us
	DjangoWebhookURL       *url.URL
	RelayStates            []string
	RelayReconcileInterval time.Duration
	// RelayReconcileExplicit is true when RELAY_RECONCILE_INTERVAL was set:
	// the operator chose the reconciler's period (or 0, off). Unset, the
	// reconciler waits until relay-setup has made the relay Django's path.
	RelayReconcileExplicit bool
	RelayRetrySchedule     []time.Duration
	// RelayEventsOn is RELAY_EVENTS: read Prefect's event stream as a relay
	// source (see RelayEvents).
	RelayEventsOn bool

	// RunCache turns the terminal-run cache on (RUN_CACHE; unset: on when
	// the relay is on). Its bounds and waits follow.
	RunCache           bool
	RunCacheMaxEntries int
	RunCacheMaxBytes   int64
	RunCacheTTL        time.Duration
	RunCacheSettle     time.Duration
	RunCacheLogGrace   time.Duration

	DefaultWorkPool      string
	DefaultWorkQueue     string
	FlowRepoURL          string
	FlowRepoBranch       string
	DeploymentEntrypoint string

	LogLevel  string
	LogFormat string
}

// Embedded reports whether the process should run its own in-memory Redis.
func (c Config) Embedded() bool { return c.RedisURL == "" }

// RelayEnabled reports whether the relay is configured: it needs the key
// Django checks, or it could never deliver. Off, there is no ingress, no
// delivery and no reconciler (docs/ARCHITECTURE.md, "Relay").
func (c Config) RelayEnabled() bool { return c.NotificationKey != "" }

// RelayEvents reports whether a worker subscribes to Prefect's event stream
// as a relay source: the relay is on and RELAY_EVENTS is not off.
func (c Config) RelayEvents() bool { return c.RelayEnabled() && c.RelayEventsOn }

// Env combines the process environment with a .env file: a variable set in the
// environment wins over the file, as with docker-compose and python-dotenv.
func Env(getenv func(string) string, dotenvPath string) func(string) string {
	file, err := godotenv.Read(dotenvPath)
	if err != nil {
		file = nil
	}
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return file[k]
	}
}

// Option adjusts what Load requires for one kind of process.
type Option func(*options)

type options struct{ noJobs bool }

// NoJobs is for a process that never seals or opens a job (relay-setup):
// JOB_ENCRYPTION_KEY is not required even with REDIS_URL set.
func NoJobs(o *options) { o.noJobs = true }

// Load reads the configuration through getenv and validates it. An unset
// variable takes its default from Vars(), the one table of names and
// defaults.
func Load(getenv func(string) string, opts ...Option) (Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	l := loader{getenv: withDefaults(getenv)}
	c := Config{
		ListenAddr:             l.str("LISTEN_ADDR"),
		WorkerListenAddr:       l.str("WORKER_LISTEN_ADDR"),
		PrefectURL:             l.url("PREFECT_API_URL"),
		PrefectTimeout:         l.seconds("PREFECT_API_TIMEOUT"),
		PrefectAuthString:      l.str("PREFECT_API_AUTH_STRING"),
		PrefectAPIKey:          l.str("PREFECT_API_KEY"),
		RedisURL:               l.str("REDIS_URL"),
		RedisWaitReplicas:      l.nonNegativeInt("REDIS_WAIT_REPLICAS"),
		RedisWaitTimeout:       l.duration("REDIS_WAIT_TIMEOUT"),
		JobWaitTimeout:         l.duration("JOB_WAIT_TIMEOUT"),
		HTTPIdleTimeout:        l.duration("HTTP_IDLE_TIMEOUT"),
		JobAttemptTimeout:      l.duration("JOB_ATTEMPT_TIMEOUT"),
		JobRetention:           l.duration("JOB_RETENTION"),
		WorkerConcurrency:      l.positiveInt("WORKER_CONCURRENCY"),
		WorkerAdaptiveLimit:    l.oneOf("WORKER_ADAPTIVE_LIMIT", "on", "off") == "on",
		JobMaxAttempts:         l.positiveInt("JOB_MAX_ATTEMPTS"),
		JobRetryWindow:         l.duration("JOB_RETRY_WINDOW"),
		RelayConcurrency:       l.positiveInt("RELAY_CONCURRENCY"),
		WorkerPollInterval:     l.durationOrZero("WORKER_POLL_INTERVAL"),
		ProxyAPIToken:          l.str("PROXY_API_TOKEN"),
		AdminToken:             l.str("ADMIN_TOKEN"),
		MetricsToken:           l.str("METRICS_TOKEN"),
		NotificationKey:        l.str("PREFECT_NOTIFICATIONS_WEBHOOK_KEY"),
		DjangoWebhookURL:       l.url("DJANGO_WEBHOOK_URL"),
		RelayStates:            l.list("RELAY_STATES"),
		RelayReconcileInterval: l.durationOrZero("RELAY_RECONCILE_INTERVAL"),
		RelayRetrySchedule:     l.durations("RELAY_RETRY_SCHEDULE"),
		RunCacheMaxEntries:     l.positiveInt("RUN_CACHE_MAX_ENTRIES"),
		RunCacheMaxBytes:       l.bytes("RUN_CACHE_MAX_BYTES"),
		RunCacheTTL:            l.duration("RUN_CACHE_TTL"),
		RunCacheSettle:         l.duration("RUN_CACHE_SETTLE"),
		RunCacheLogGrace:       l.duration("RUN_CACHE_LOG_GRACE"),
		DefaultWorkPool:        l.str("PREFECT_DEFAULT_WORK_POOL"),
		DefaultWorkQueue:       l.str("PREFECT_DEFAULT_WORK_QUEUE"),
		FlowRepoURL:            l.str("FLOW_REPO_URL"),
		FlowRepoBranch:         l.str("PREFECT_PROXY_GIT_BRANCH"),
		DeploymentEntrypoint:   l.str("DEPLOYMENT_ENTRYPOINT"),
		LogLevel:               l.oneOf("LOG_LEVEL", "trace", "debug", "info", "warn", "warning", "error"),
		LogFormat:              l.oneOf("LOG_FORMAT", "json", "text"),
	}
	c.RelayInboundKey = l.str("RELAY_INBOUND_KEY")
	if c.RelayInboundKey == "" {
		c.RelayInboundKey = c.NotificationKey
	}
	c.RelayReconcileExplicit = getenv("RELAY_RECONCILE_INTERVAL") != ""
	c.RelayEventsOn = l.onOff("RELAY_EVENTS", true)
	// The cache serves only while the event stream is live: on with it.
	c.RunCache = l.onOff("RUN_CACHE", c.RelayEvents())
	if c.WorkerPollInterval == 0 {
		c.WorkerPollInterval = jobs.DefaultPollInterval
	}
	if c.RedisURL != "" {
		l.redisURL("REDIS_URL", c.RedisURL)
	}
	if !o.noJobs {
		c.JobEncryptionKey, c.JobKeyGenerated = l.key("JOB_ENCRYPTION_KEY", c.Embedded())
	}
	if l.err != nil {
		return Config{}, l.err
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// validate checks the rules between settings.
func (c Config) validate() error {
	switch {
	case c.JobWaitTimeout < c.PrefectTimeout:
		// A synchronous write must be able to wait for at least one Prefect
		// call, or a slow but healthy Prefect turns every write into a 504.
		return fmt.Errorf("config: JOB_WAIT_TIMEOUT (%s) must be at least PREFECT_API_TIMEOUT (%s): "+
			"a write waits for at least one Prefect call", c.JobWaitTimeout, c.PrefectTimeout)
	case c.JobAttemptTimeout < c.PrefectTimeout:
		return fmt.Errorf("config: JOB_ATTEMPT_TIMEOUT (%s) must be at least PREFECT_API_TIMEOUT (%s): "+
			"a job's attempt must fit one Prefect call", c.JobAttemptTimeout, c.PrefectTimeout)
	}
	return nil
}

// loader keeps the first error so Load reads as a flat list of fields.
type loader struct {
	getenv func(string) string
	err    error
}

func (l *loader) fail(name, format string, args ...any) {
	if l.err == nil {
		l.err = fmt.Errorf("config: %s: %s", name, fmt.Sprintf(format, args...))
	}
}

// str is the variable's value, or its default from Vars() when unset.
func (l *loader) str(name string) string {
	return strings.TrimSpace(l.getenv(name))
}

func (l *loader) url(name string) *url.URL {
	raw := l.str(name)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.fail(name, "must be an http(s) URL, got %q", raw)
		return &url.URL{}
	}
	return u
}

func (l *loader) redisURL(name, raw string) {
	u, err := url.Parse(raw)
	if err == nil && (u.Scheme == "redis-cluster" || u.Scheme == "rediss-cluster") {
		l.fail(name, "Redis Cluster is not supported; for failover use Redis Sentinel: "+
			"redis-sentinel://host1:26379,host2:26379,host3:26379?master=<name>")
		return
	}
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "redis-sentinel") {
		l.fail(name, "must be a redis://, rediss:// or redis-sentinel:// URL")
	}
}

// seconds accepts a number of seconds (the Python proxy's form) or a Go duration.
func (l *loader) seconds(name string) time.Duration {
	raw := l.str(name)
	if f, err := strconv.ParseFloat(raw, 64); err == nil && f > 0 {
		return time.Duration(f * float64(time.Second))
	}
	if d, err := time.ParseDuration(raw); err == nil && d > 0 {
		return d
	}
	l.fail(name, "must be a positive number of seconds or a duration like 5s, got %q", raw)
	return 0
}

func (l *loader) duration(name string) time.Duration {
	d := l.durationOrZero(name)
	if d <= 0 {
		l.fail(name, "must be positive")
	}
	return d
}

// durationOrZero reads a duration; unset with no default, or "0", is 0.
func (l *loader) durationOrZero(name string) time.Duration {
	raw := l.str(name)
	if raw == "" || raw == "0" {
		return 0
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		l.fail(name, "must be a duration like 30s, got %q", raw)
		return 0
	}
	return d
}

func (l *loader) durations(name string) []time.Duration {
	var out []time.Duration
	for _, part := range l.list(name) {
		d, err := time.ParseDuration(part)
		if err != nil || d <= 0 {
			l.fail(name, "must be a comma-separated list of durations, got %q", part)
			return nil
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		l.fail(name, "must not be empty")
	}
	return out
}

func (l *loader) positiveInt(name string) int {
	raw := l.str(name)
	n, err := strconv.Atoi(raw)
	if err != nil || n <= 0 {
		l.fail(name, "must be a positive integer, got %q", raw)
		return 0
	}
	return n
}

func (l *loader) nonNegativeInt(name string) int {
	raw := l.str(name)
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		l.fail(name, "must be a non-negative integer, got %q", raw)
		return 0
	}
	return n
}

// onOff reads on/off (true/false, 1/0); unset is def.
func (l *loader) onOff(name string, def bool) bool {
	switch strings.ToLower(l.str(name)) {
	case "":
		return def
	case "on", "true", "1", "yes":
		return true
	case "off", "false", "0", "no":
		return false
	}
	l.fail(name, "must be on or off, got %q", l.str(name))
	return false
}

// bytes reads a size: a number of bytes, or one with KiB, MiB or GiB.
func (l *loader) bytes(name string) int64 {
	raw := l.str(name)
	num, mult := raw, int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(raw, suffix); ok {
			num, mult = strings.TrimSpace(n), m
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		l.fail(name, "must be a positive size in bytes (or with KiB, MiB, GiB), got %q", raw)
		return 0
	}
	return n * mult
}

func (l *loader) list(name string) []string {
	var out []string
	for _, p := range strings.Split(l.str(name), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (l *loader) oneOf(name string, allowed ...string) string {
	v := strings.ToLower(l.str(name))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	l.fail(name, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	return ""
}

// key decodes a base64 32-byte key; when optional and absent, a random one is made.
func (l *loader) key(name string, optional bool) ([]byte, bool) {
	raw := l.str(name)
	if raw == "" {
		if !optional {
			l.fail(name, "is required when REDIS_URL is set (32 random bytes, base64; e.g. `openssl rand -base64 32`)")
			return nil, false
		}
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			l.fail(name, "cannot generate a key: %v", err)
		}
		return k, true
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(raw); err == nil {
			if len(k) != 32 {
				l.fail(name, "must decode to 32 bytes, got %d", len(k))
				return nil, false
			}
			return k, false
		}
	}
	l.fail(name, "must be base64")
	return nil, false
}
