// Package app wires one process from its Config: config → Redis client →
// Prefect client → proxy service → write ops → jobs client and/or worker.
// cmd/api, cmd/worker and internal/bench build their process with it, so the
// wiring exists once.
package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/adaptive"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/events"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
	"github.com/DalgoT4D/prefect-proxy-go/internal/worker"
	"github.com/DalgoT4D/prefect-proxy-go/internal/writes"
)

// App is one process's shared parts.
type App struct {
	Config   config.Config
	Log      *logrus.Logger
	Registry *prometheus.Registry
	// Redis is the process's one Redis client: the api, the jobs client and
	// its inspector, the asynq server, the relay and asynqmon all use it.
	Redis redis.UniversalClient
	// Wakeup announces the tasks this process queues to idle workers, and
	// wakes this process's own worker (embedded mode, cmd/worker).
	Wakeup  *jobs.Wakeup
	Prefect *prefect.Client
	Proxy   *proxy.Service
	Ops     *writes.Ops
	// RunCache is the terminal-run cache this process serves from (nil when
	// RUN_CACHE is off).
	RunCache *runcache.Cache
	// invalidator drops cached entries of a run on its state events: the
	// worker's event-stream subscriber calls it whenever the stream runs,
	// even where this process serves nothing from the cache, so no api
	// serves an entry that a missed event should have dropped.
	invalidator *runcache.Cache

	closers []func()
}

// New builds the process's parts. With REDIS_URL unset it starts the
// embedded in-memory Redis. Close releases everything.
func New(cfg config.Config, log *logrus.Logger) (*App, error) {
	a := &App{Config: cfg, Log: log, Registry: prometheus.NewRegistry()}
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	redisURL := cfg.RedisURL
	if cfg.Embedded() {
		emb, err := jobs.StartEmbedded()
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, emb.Close)
		redisURL = emb.URL()
	}
	rdb, err := jobs.Connect(redisURL)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Redis = rdb
	a.closers = append(a.closers, func() { _ = rdb.Close() })
	// Every task this process queues wakes idle workers (jobs.Wakeup).
	a.Wakeup = jobs.NewWakeup(rdb, log.WithField("component", "jobs"))
	a.closers = append(a.closers, a.Wakeup.Close)
	a.Prefect = prefect.New(prefect.Config{
		BaseURL:    cfg.PrefectURL,
		Timeout:    cfg.PrefectTimeout,
		AuthString: cfg.PrefectAuthString,
		APIKey:     cfg.PrefectAPIKey,
		// Calls of write jobs wait for a slot of the worker's adaptive
		// limit (WORKER_ADAPTIVE_LIMIT); reads carry none and pass through.
		Instrument: func(rt http.RoundTripper) http.RoundTripper {
			return adaptive.Transport(obs.NewUpstream(a.Registry).Transport(rt, "prefect", obs.PrefectRoute))
		},
	})
	a.Proxy = proxy.New(a.Prefect, log)
	a.Proxy.DefaultWorkPool, a.Proxy.DefaultWorkQueue = cfg.DefaultWorkPool, cfg.DefaultWorkQueue
	a.Proxy.FlowRepoURL, a.Proxy.FlowRepoBranch = cfg.FlowRepoURL, cfg.FlowRepoBranch
	a.Proxy.DeploymentEntrypoint = cfg.DeploymentEntrypoint
	if cfg.RunCache || cfg.RelayEvents() {
		a.invalidator = runcache.New(rdb, a.Proxy, runcache.Config{
			MaxEntries: cfg.RunCacheMaxEntries, MaxBytes: cfg.RunCacheMaxBytes, TTL: cfg.RunCacheTTL,
			Settle: cfg.RunCacheSettle, LogGrace: cfg.RunCacheLogGrace,
		}, a.Registry, log.WithField("component", "runcache"))
	}
	if cfg.RunCache {
		a.RunCache = a.invalidator
		a.Proxy.Cache = a.RunCache
	}
	a.Ops = writes.New(a.Proxy)
	return a, nil
}

// Close releases the process's resources, last opened first. Call it after
// the worker and the api have stopped.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Ping checks that Redis answers.
func (a *App) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return a.Redis.Ping(ctx).Err()
}

// StartWorker starts a worker executing the write ops (and the relay's
// deliveries when it is on). Stop it before Close.
func (a *App) StartWorker() (*worker.Worker, error) {
	var observers []events.Observer
	if a.invalidator != nil {
		observers = append(observers, a.invalidator)
	}
	w, err := worker.New(worker.Deps{Config: a.Config, Log: a.Log, Redis: a.Redis, Prefect: a.Prefect,
		Registry: a.Registry, Ops: a.Ops.Registry(), Wakeup: a.Wakeup, PollInterval: a.Config.WorkerPollInterval,
		EventObservers: observers})
	if err != nil {
		return nil, err
	}
	if err := w.Start(); err != nil {
		return nil, err
	}
	return w, nil
}

// API builds the api's handler: the routes, the jobs client, asynqmon (when
// ADMIN_TOKEN is set) and the relay's ingress.
func (a *App) API(ctx context.Context) (http.Handler, error) {
	var repl *jobs.Replication
	if !a.Config.Embedded() {
		if err := jobs.RefuseCluster(ctx, a.Redis); err != nil {
			return nil, err
		}
		repl = jobs.NewReplication(a.Redis, a.Config.RedisWaitReplicas, a.Config.RedisWaitTimeout)
	}
	jc, err := jobs.NewClient(ctx, a.Redis, jobs.ClientConfig{Key: a.Config.JobEncryptionKey, Ops: a.Ops.Registry(),
		MaxAttempts: a.Config.JobMaxAttempts, Retention: a.Config.JobRetention, AttemptTimeout: a.Config.JobAttemptTimeout,
		Replication: repl, Log: a.Log.WithField("component", "jobs")})
	if err != nil {
		return nil, fmt.Errorf("api: redis at REDIS_URL not reachable: %w", err)
	}
	a.closers = append(a.closers, jc.Close)
	var mon http.Handler
	if a.Config.AdminToken != "" {
		// asynqmon makes its clients from the option: it gets the shared one.
		// Its Close would close that client, so Close (above) does instead.
		mon = asynqmon.New(asynqmon.Options{RootPath: "/monitoring", RedisConnOpt: sharedRedis{a.Redis}})
	}
	// asynq's queue sizes and latency, and the relay backlog, read at scrape time.
	if err := obs.RegisterQueueMetrics(a.Registry, asynq.NewInspectorFromRedisClient(a.Redis)); err != nil {
		return nil, err
	}
	relayAPI := relay.NewAPI(a.Config, a.Redis, a.Log.WithField("component", "relay"), a.Registry)
	if repl != nil && relayAPI.Ingress != nil {
		// The ingress's 202 is an acknowledgement to Prefect: make it survive a failover.
		relayAPI.Ingress.Queue = repl.Enqueuer(relayAPI.Ingress.Queue)
	}
	if a.RunCache != nil {
		a.Log.Info("run cache on: reads of finished flow runs are answered from Redis while Prefect's event stream is connected (" +
			runcache.LiveKey + " set), from Prefect otherwise (RUN_CACHE=off turns it off)")
	} else {
		a.Log.Info("run cache off: every read goes to Prefect (RUN_CACHE=on turns it on)")
	}
	return httpapi.New(httpapi.Deps{
		Config:     a.Config,
		Log:        a.Log,
		Proxy:      a.Proxy,
		RunCache:   a.RunCache,
		Metrics:    httpapi.NewMetrics(a.Registry),
		Jobs:       jc,
		Ops:        a.Ops,
		Monitoring: mon,
		Relay:      relayAPI,
		Checks:     obs.Checks(a.Config, a.Redis, a.Prefect),
		Ready: func(c *gin.Context) error {
			if err := a.Ping(c.Request.Context()); err != nil {
				return errors.New("redis not reachable")
			}
			return nil
		},
	}), nil
}

// sharedRedis is an asynq.RedisConnOpt that hands out the process's client
// instead of opening a new pool.
type sharedRedis struct{ c redis.UniversalClient }

func (s sharedRedis) MakeRedisClient() any { return s.c }
