// Command api serves the Django-facing HTTP API. With REDIS_URL unset it also
// starts an embedded Redis and an in-process worker, so one command runs all.
//
//	api               serve (configured by the environment; api --help lists it)
//	api healthcheck   exit 0 when this host's api answers /livez with 200, else 1
//	api --version     print the version and commit
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
	"github.com/DalgoT4D/prefect-proxy-go/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	cli.Exit(err, os.Stderr)
}

var command = cli.Command{
	Name:     "api",
	Synopsis: "the Django-facing HTTP API of prefect-proxy (with REDIS_URL unset, also an embedded Redis and an in-process worker)",
	Usage:    "api [flags]          serve HTTP on LISTEN_ADDR\n  api healthcheck      exit 0 if the api on LISTEN_ADDR answers GET /livez with 200, else 1",
	Program:  config.API,
}

// run serves until ctx ends, or runs the command in args. Errors carry their
// exit status (cli.ExitError); --help and --version return nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	rest, err := cli.Parse(command, args, stdout, stderr)
	if errors.Is(err, cli.ErrDone) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := config.Load(config.Env(getenv, ".env"))
	switch {
	case len(rest) == 1 && rest[0] == "healthcheck":
		if err != nil {
			return &cli.ExitError{Code: 1, Err: err}
		}
		return cli.Healthcheck(ctx, cfg.ListenAddr, 5*time.Second, stdout)
	case len(rest) > 0:
		return cli.Usage("api: unknown command %q; run 'api --help'", strings.Join(rest, " "))
	case err != nil:
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}

func serve(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	log := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	log.WithField("component", "relay").Info(relay.Describe(cfg))

	redisURL := cfg.RedisURL
	if cfg.Embedded() {
		emb, err := jobs.StartEmbedded()
		if err != nil {
			return err
		}
		defer emb.Close()
		redisURL = emb.URL()
		log.Warn("REDIS_URL is unset: using an embedded in-memory Redis and an in-process worker; " +
			"jobs and notifications are NOT durable across restarts. Set REDIS_URL in production.")
	}
	redisOpt, err := jobs.RedisOpt(redisURL)
	if err != nil {
		return err
	}
	rdb := redisOpt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	var repl *jobs.Replication
	if !cfg.Embedded() {
		if err := jobs.RefuseCluster(ctx, rdb); err != nil {
			return err
		}
		repl = jobs.NewReplication(rdb, cfg.RedisWaitReplicas, cfg.RedisWaitTimeout)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pc := prefect.New(prefect.Config{
		BaseURL:    cfg.PrefectURL,
		Timeout:    cfg.PrefectTimeout,
		AuthString: cfg.PrefectAuthString,
		APIKey:     cfg.PrefectAPIKey,
		Instrument: func(rt http.RoundTripper) http.RoundTripper {
			return obs.NewUpstream(reg).Transport(rt, "prefect", obs.PrefectRoute)
		},
	})
	svc := proxy.New(pc, log)
	svc.DefaultWorkPool, svc.DefaultWorkQueue = cfg.DefaultWorkPool, cfg.DefaultWorkQueue
	svc.FlowRepoURL, svc.FlowRepoBranch, svc.DeploymentEntrypoint = cfg.FlowRepoURL, cfg.FlowRepoBranch, cfg.DeploymentEntrypoint

	ops := worker.WriteOps(svc)
	if cfg.Embedded() {
		w, err := worker.New(worker.Deps{Config: cfg, Log: log, Redis: redisOpt, Prefect: pc, Registry: reg, Ops: ops, PollInterval: cfg.WorkerPollInterval})
		if err != nil {
			return err
		}
		if err := w.Start(); err != nil {
			return err
		}
		defer w.Shutdown()
	}
	jc, err := jobs.NewClient(ctx, rdb, jobs.ClientConfig{Key: cfg.JobEncryptionKey, Ops: ops,
		MaxAttempts: cfg.JobMaxAttempts, Retention: cfg.JobRetention, Replication: repl, Log: log.WithField("component", "jobs")})
	if err != nil {
		return fmt.Errorf("api: redis at REDIS_URL not reachable: %w", err)
	}
	defer jc.Close()
	var mon http.Handler
	if cfg.AdminToken != "" {
		m := asynqmon.New(asynqmon.Options{RootPath: "/monitoring", RedisConnOpt: redisOpt})
		defer m.Close()
		mon = m
	}

	// asynq's queue sizes and latency, and the relay backlog, read at scrape time.
	if err := obs.RegisterQueueMetrics(reg, asynq.NewInspectorFromRedisClient(rdb)); err != nil {
		return err
	}
	relayAPI := relay.NewAPI(cfg, rdb, log.WithField("component", "relay"), reg)
	if repl != nil {
		// The ingress's 202 is an acknowledgement to Prefect: make it survive a failover.
		relayAPI.Ingress.Queue = repl.Enqueuer(relayAPI.Ingress.Queue)
	}
	handler := httpapi.New(httpapi.Deps{
		Config:     cfg,
		Log:        log,
		Proxy:      svc,
		Metrics:    httpapi.NewMetrics(reg),
		Jobs:       jc,
		Monitoring: mon,
		Relay:      relayAPI,
		Checks:     obs.Checks(cfg, rdb, pc),
		Ready: func(c *gin.Context) error {
			ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
			defer cancel()
			if err := rdb.Ping(ctx).Err(); err != nil {
				return errors.New("redis not reachable")
			}
			return nil
		},
	})
	return httpapi.Serve(ctx, cfg.ListenAddr, handler, func(a net.Addr) {
		fmt.Fprintf(stdout, "api listening on http://%s (Prefect %s)\n", a, cfg.PrefectURL)
		log.WithField("addr", a.String()).Info("api listening")
	})
}
