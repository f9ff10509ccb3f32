package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ListenAddr", c.ListenAddr, ":8085"},
		{"WorkerListenAddr", c.WorkerListenAddr, ":8086"},
		{"PrefectURL", c.PrefectURL.String(), "http://127.0.0.1:4200/api"},
		{"PrefectTimeout", c.PrefectTimeout, 20 * time.Second},
		{"JobWaitTimeout", c.JobWaitTimeout, 25 * time.Second},
		{"RedisWaitReplicas", c.RedisWaitReplicas, 1},
		{"RedisWaitTimeout", c.RedisWaitTimeout, time.Second},
		{"JobAttemptTimeout", c.JobAttemptTimeout, 5 * time.Minute},
		{"JobRetention", c.JobRetention, 24 * time.Hour},
		{"HTTPIdleTimeout", c.HTTPIdleTimeout, 90 * time.Second},
		{"WorkerConcurrency", c.WorkerConcurrency, 10},
		{"JobMaxAttempts", c.JobMaxAttempts, 100},
		{"DefaultWorkPool", c.DefaultWorkPool, "default-agent-pool"},
		{"DefaultWorkQueue", c.DefaultWorkQueue, "ddp"},
		{"RelayReconcileInterval", c.RelayReconcileInterval, 30 * time.Second},
		{"RelayStates", strings.Join(c.RelayStates, ","), "Pending,Running,Completed,Cancelled,Failed,Crashed,TimedOut"},
		{"RelayRetrySchedule[0]", c.RelayRetrySchedule[0], 5 * time.Second},
		{"DjangoWebhookURL", c.DjangoWebhookURL.String(), "http://127.0.0.1:8002/webhooks/v1/notification/"},
		{"Embedded", c.Embedded(), true},
		{"JobKeyGenerated", c.JobKeyGenerated, true},
		{"JobEncryptionKey len", len(c.JobEncryptionKey), 32},
		{"LogFormat", c.LogFormat, "json"},
		{"WorkerPollInterval (embedded)", c.WorkerPollInterval, time.Second},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	c, err := Load(env(map[string]string{
		"PREFECT_API_TIMEOUT":               "5",
		"REDIS_URL":                         "redis://127.0.0.1:6379/0",
		"JOB_ENCRYPTION_KEY":                key,
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k1",
		"RELAY_RECONCILE_INTERVAL":          "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.PrefectTimeout != 5*time.Second || c.Embedded() || c.JobKeyGenerated {
		t.Errorf("got %+v", c)
	}
	if c.RelayInboundKey != "k1" {
		t.Errorf("RelayInboundKey defaults to the Django key, got %q", c.RelayInboundKey)
	}
	if c.WorkerPollInterval != time.Second {
		t.Errorf("with Redis an idle worker looks every 1s without a wake-up by default, got %v", c.WorkerPollInterval)
	}
	if c.RelayReconcileInterval != 0 || !c.RelayReconcileExplicit || !c.RelayEnabled() {
		t.Errorf("RELAY_RECONCILE_INTERVAL=0 turns the reconciler off, explicitly; got %v %v %v",
			c.RelayReconcileInterval, c.RelayReconcileExplicit, c.RelayEnabled())
	}
	c, err = Load(env(map[string]string{"PREFECT_API_TIMEOUT": "1500ms"}))
	if err != nil || c.PrefectTimeout != 1500*time.Millisecond {
		t.Errorf("a Go duration is accepted for PREFECT_API_TIMEOUT: %v %v", c.PrefectTimeout, err)
	}
}

func TestRelayIsOffUntilTurnedOn(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		env              map[string]string
		enabled, explict bool
	}{
		{"nothing set: off", nil, false, false},
		{"inbound key alone cannot deliver: off", map[string]string{"RELAY_INBOUND_KEY": "in"}, false, false},
		{"Django's key: on, reconciler waits for setup", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k"}, true, false},
		{"interval set: explicit", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k", "RELAY_RECONCILE_INTERVAL": "30s"}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.RelayEnabled() != tc.enabled || c.RelayReconcileExplicit != tc.explict {
				t.Errorf("RelayEnabled()=%v RelayReconcileExplicit=%v, want %v %v", c.RelayEnabled(), c.RelayReconcileExplicit, tc.enabled, tc.explict)
			}
			if c.RelayReconcileInterval != 30*time.Second {
				t.Errorf("the period defaults to 30s, got %v", c.RelayReconcileInterval)
			}
		})
	}
}

func TestRelayEventsOnWithTheRelay(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"relay off: no stream", map[string]string{"RELAY_EVENTS": "on"}, false},
		{"relay on: stream on by default", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k"}, true},
		{"RELAY_EVENTS=off", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k", "RELAY_EVENTS": "off"}, false},
		{"RELAY_EVENTS=false", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k", "RELAY_EVENTS": "false"}, false},
		{"RELAY_EVENTS=On", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k", "RELAY_EVENTS": "On"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.RelayEvents() != tc.want {
				t.Errorf("RelayEvents() = %v, want %v", c.RelayEvents(), tc.want)
			}
		})
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := map[string]map[string]string{
		"PREFECT_API_URL":     {"PREFECT_API_URL": "not a url"},
		"PREFECT_API_TIMEOUT": {"PREFECT_API_TIMEOUT": "-3"},
		"WORKER_CONCURRENCY":  {"WORKER_CONCURRENCY": "zero"},
		"JOB_WAIT_TIMEOUT":    {"JOB_WAIT_TIMEOUT": "soon"},
		"HTTP_IDLE_TIMEOUT":   {"HTTP_IDLE_TIMEOUT": "0"},
		"RELAY_RETRY_SCHEDULE": {
			"RELAY_RETRY_SCHEDULE": "5s,never"},
		"REDIS_URL":           {"REDIS_URL": "http://x", "JOB_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))},
		"JOB_ENCRYPTION_KEY":  {"REDIS_URL": "redis://x:6379"},
		"LOG_LEVEL":           {"LOG_LEVEL": "loud"},
		"REDIS_WAIT_REPLICAS": {"REDIS_WAIT_REPLICAS": "-1"},
		"REDIS_WAIT_TIMEOUT":  {"REDIS_WAIT_TIMEOUT": "0"},
		"RELAY_EVENTS":        {"RELAY_EVENTS": "sometimes"},
		"RUN_CACHE":           {"RUN_CACHE": "maybe"},
		"RUN_CACHE_MAX_BYTES": {"RUN_CACHE_MAX_BYTES": "64MB"},
		"RUN_CACHE_TTL":       {"RUN_CACHE_TTL": "0"},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(env(e))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("want an error naming %s, got %v", name, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error should be one line: %q", err)
			}
		})
	}
	_, err := Load(env(map[string]string{"REDIS_URL": "redis://x:6379", "JOB_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString([]byte("short"))}))
	if err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Errorf("short key: %v", err)
	}
}

func TestRedisClusterRefusedNamingSentinel(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"redis-cluster://10.0.0.1:7000,10.0.0.2:7000", "rediss-cluster://10.0.0.1:7000"} {
		_, err := Load(env(map[string]string{"REDIS_URL": u, "JOB_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}))
		if err == nil || !strings.Contains(err.Error(), "REDIS_URL") || !strings.Contains(err.Error(), "Redis Cluster is not supported") ||
			!strings.Contains(err.Error(), "redis-sentinel://") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: want one line refusing Cluster and naming Sentinel, got %v", u, err)
		}
	}
}

func TestCrossFieldRulesFailWithOneLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want string // "" = valid
	}{
		{"a wait shorter than one Prefect call", map[string]string{"JOB_WAIT_TIMEOUT": "10s", "PREFECT_API_TIMEOUT": "15"},
			"JOB_WAIT_TIMEOUT (10s) must be at least PREFECT_API_TIMEOUT (15s)"},
		{"an attempt shorter than one Prefect call", map[string]string{"JOB_ATTEMPT_TIMEOUT": "10s", "PREFECT_API_TIMEOUT": "15", "JOB_WAIT_TIMEOUT": "30s"},
			"JOB_ATTEMPT_TIMEOUT (10s) must be at least PREFECT_API_TIMEOUT (15s)"},
		{"a raised Prefect timeout needs a longer wait", map[string]string{"PREFECT_API_TIMEOUT": "30"},
			"JOB_WAIT_TIMEOUT (25s) must be at least PREFECT_API_TIMEOUT (30s)"},
		{"equal is enough", map[string]string{"JOB_WAIT_TIMEOUT": "15s", "JOB_ATTEMPT_TIMEOUT": "15s", "PREFECT_API_TIMEOUT": "15"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(env(tc.env))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want %q, got %v", tc.want, err)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("error should be one line: %q", err)
			}
		})
	}
}

// relay-setup never seals a job: with REDIS_URL set it needs no key, and
// REDIS_URL is still validated.
func TestNoJobsNeedsNoKey(t *testing.T) {
	t.Parallel()
	c, err := Load(env(map[string]string{"REDIS_URL": "redis://x:6379"}), NoJobs)
	if err != nil || c.RedisURL != "redis://x:6379" || c.JobEncryptionKey != nil {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := Load(env(map[string]string{"REDIS_URL": "http://x"}), NoJobs); err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("bad REDIS_URL accepted: %v", err)
	}
}

func TestDotenvFileUnderEnvironment(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(p, []byte("LISTEN_ADDR=:9000\nLOG_LEVEL=debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	get := Env(env(map[string]string{"LOG_LEVEL": "warn"}), p)
	c, err := Load(get)
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":9000" {
		t.Errorf(".env value not read: %q", c.ListenAddr)
	}
	if c.LogLevel != "warn" {
		t.Errorf("environment must win over .env: %q", c.LogLevel)
	}
	if _, err := Load(Env(env(nil), filepath.Join(t.TempDir(), "missing"))); err != nil {
		t.Errorf("a missing .env is fine: %v", err)
	}
}

// The run cache is on with the relay (whose event stream it needs) unless
// said otherwise; sizes take binary units.
func TestRunCacheSettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		env   map[string]string
		on    bool
		bytes int64
	}{
		{"relay off: off", nil, false, 64 << 20},
		{"relay on: on", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k"}, true, 64 << 20},
		{"relay on, RUN_CACHE=off: off", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k", "RUN_CACHE": "off"}, false, 64 << 20},
		{"RUN_CACHE=on without the relay: on", map[string]string{"RUN_CACHE": "on"}, true, 64 << 20},
		{"bytes as a number", map[string]string{"RUN_CACHE_MAX_BYTES": "1000"}, false, 1000},
		{"bytes in GiB", map[string]string{"RUN_CACHE_MAX_BYTES": "2GiB"}, false, 2 << 30},
		{"bytes in KiB", map[string]string{"RUN_CACHE_MAX_BYTES": "512 KiB"}, false, 512 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.RunCache != tc.on || c.RunCacheMaxBytes != tc.bytes {
				t.Errorf("RunCache=%v RunCacheMaxBytes=%d, want %v %d", c.RunCache, c.RunCacheMaxBytes, tc.on, tc.bytes)
			}
		})
	}
}
