// Package proxy holds the operations behind the Django-facing routes, in
// Prefect terms. Each method returns exactly the JSON shape the Python
// prefect-proxy returned, or an *apperr.Error carrying its status and message.
package proxy

import (
	"context"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
)

// FanOut bounds the parallel Prefect calls one request may make.
const FanOut = 16

// Service implements the read operations.
type Service struct {
	prefect *prefect.Client
	log     logrus.FieldLogger
	group   singleflight.Group // identical concurrent reads share one upstream call
	// Defaults for deployment routes.
	DefaultWorkPool  string
	DefaultWorkQueue string
	// Where new deployments pull their flow code from (FLOW_REPO_URL,
	// PREFECT_PROXY_GIT_BRANCH, DEPLOYMENT_ENTRYPOINT).
	FlowRepoURL          string
	FlowRepoBranch       string
	DeploymentEntrypoint string
	blockRefs            blockCache // block type/schema ids used by the block writes
	// Cache holds finished runs' history verdicts (route 19) and is told of
	// the proxy's own retries and deletes; nil: off.
	Cache *runcache.Cache
}

// Defaults of the deployment settings, the Python proxy's values
// (PREFECT_DEFAULT_WORK_POOL, PREFECT_DEFAULT_WORK_QUEUE, FLOW_REPO_URL,
// PREFECT_PROXY_GIT_BRANCH, DEPLOYMENT_ENTRYPOINT).
const (
	DefaultWorkPool             = "default-agent-pool"
	DefaultWorkQueue            = "ddp"
	DefaultFlowRepoURL          = "https://github.com/DalgoT4D/prefect-proxy.git"
	DefaultFlowRepoBranch       = "main"
	DefaultDeploymentEntrypoint = "proxy/prefect_flows_runner.py:deployment_schedule_flow_v5"
)

// New builds a Service with the default deployment settings.
func New(pc *prefect.Client, log logrus.FieldLogger) *Service {
	return &Service{prefect: pc, log: log, DefaultWorkPool: DefaultWorkPool, DefaultWorkQueue: DefaultWorkQueue,
		FlowRepoURL: DefaultFlowRepoURL, FlowRepoBranch: DefaultFlowRepoBranch,
		DeploymentEntrypoint: DefaultDeploymentEntrypoint}
}

// Prefect exposes the client, for routes that pass Prefect's answer through.
func (s *Service) Prefect() *prefect.Client { return s.prefect }

// readCtx bounds a whole read — its retries, pages and fan-out levels — by
// PREFECT_API_TIMEOUT, so a read answers (502/503/504 at worst) within it
// rather than within a multiple of it.
func (s *Service) readCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.prefect.Timeout())
}

// sharedRead runs the read fn once for all concurrent callers with the same
// key. Its result (or error) is everyone's, so it is detached from the first
// caller's cancellation, and bounded as a whole by readCtx.
func sharedRead[T any](ctx context.Context, s *Service, key string, fn func(context.Context) (T, error)) (T, error) {
	return shared(s, key, func() (T, error) {
		ctx, cancel := s.readCtx(context.WithoutCancel(ctx))
		defer cancel()
		return fn(ctx)
	})
}

// shared runs fn once for all concurrent callers with the same key.
func shared[T any](s *Service, key string, fn func() (T, error)) (T, error) {
	v, err, _ := s.group.Do(key, func() (any, error) { return fn() })
	if err != nil {
		var zero T
		return zero, err
	}
	return v.(T), nil
}

// PrefectVersion is route 34: Prefect's package version, or nil on any error
// (Django shows "Not available" instead of breaking its page).
func (s *Service) PrefectVersion(ctx context.Context) any {
	v, err := sharedRead(ctx, s, "version", func(ctx context.Context) (string, error) {
		var v string
		err := s.prefect.Get(ctx, "/admin/version", &v)
		return v, err
	})
	if err != nil {
		s.log.WithError(err).Warn("prefect version unavailable")
		return nil
	}
	return v
}
