package config_test

import (
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
)

// The packages that use a setting keep its default as a named constant (the
// zero value of their own Config means it); the variable table in vars.go
// documents and loads the same value. This keeps the two from diverging.
func TestTableDefaultsAreThePackagesDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	withRedis, err := config.Load(func(k string) string {
		return map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "JOB_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		got, want any
	}{
		{"PREFECT_API_TIMEOUT", c.PrefectTimeout, prefect.DefaultTimeout},
		{"JOB_WAIT_TIMEOUT", c.JobWaitTimeout, jobs.DefaultWait},
		{"JOB_ATTEMPT_TIMEOUT", c.JobAttemptTimeout, jobs.DefaultAttemptTimeout},
		{"JOB_RETENTION", c.JobRetention, jobs.DefaultRetention},
		{"JOB_MAX_ATTEMPTS", c.JobMaxAttempts, jobs.DefaultMaxAttempts},
		{"WORKER_CONCURRENCY", c.WorkerConcurrency, jobs.DefaultConcurrency},
		{"RELAY_CONCURRENCY", c.RelayConcurrency, jobs.DefaultRelayConcurrency},
		{"JOB_RETRY_WINDOW", c.JobRetryWindow, jobs.DefaultRetryWindow},
		{"WORKER_POLL_INTERVAL (embedded)", c.WorkerPollInterval, jobs.DefaultPollInterval},
		{"WORKER_POLL_INTERVAL", withRedis.WorkerPollInterval, jobs.DefaultPollInterval},
		{"PREFECT_DEFAULT_WORK_POOL", c.DefaultWorkPool, proxy.DefaultWorkPool},
		{"PREFECT_DEFAULT_WORK_QUEUE", c.DefaultWorkQueue, proxy.DefaultWorkQueue},
		{"FLOW_REPO_URL", c.FlowRepoURL, proxy.DefaultFlowRepoURL},
		{"PREFECT_PROXY_GIT_BRANCH", c.FlowRepoBranch, proxy.DefaultFlowRepoBranch},
		{"DEPLOYMENT_ENTRYPOINT", c.DeploymentEntrypoint, proxy.DefaultDeploymentEntrypoint},
		{"RUN_CACHE_MAX_ENTRIES", c.RunCacheMaxEntries, runcache.DefaultMaxEntries},
		{"RUN_CACHE_MAX_BYTES", c.RunCacheMaxBytes, int64(runcache.DefaultMaxBytes)},
		{"RUN_CACHE_TTL", c.RunCacheTTL, runcache.DefaultTTL},
		{"RUN_CACHE_SETTLE", c.RunCacheSettle, runcache.DefaultSettle},
		{"RUN_CACHE_LOG_GRACE", c.RunCacheLogGrace, runcache.DefaultLogGrace},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: the table loads %v, its package's default is %v", tc.name, tc.got, tc.want)
		}
	}
}
