// Command worker executes the proxy's jobs and relay deliveries. Run any
// number of them against one Redis (REDIS_URL is required).
//
//	worker               work (configured by the environment; worker --help lists it)
//	worker healthcheck   exit 0 when this host's worker answers /livez with 200, else 1
//	worker --version     print the version and commit
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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
	Name:     "worker",
	Synopsis: "runs prefect-proxy's write jobs and relay deliveries from Redis; start as many as needed",
	Usage:    "worker [flags]          work, with an ops port (/livez, /readyz, /metrics) on WORKER_LISTEN_ADDR\n  worker healthcheck      exit 0 if the worker on WORKER_LISTEN_ADDR answers GET /livez with 200, else 1",
	Program:  config.Worker,
}

// run works until ctx ends, or runs the command in args. Errors carry their
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
		return cli.Healthcheck(ctx, cfg.WorkerListenAddr, 5*time.Second, stdout)
	case len(rest) > 0:
		return cli.Usage("worker: unknown command %q; run 'worker --help'", strings.Join(rest, " "))
	case err != nil:
		return err
	}
	if cfg.Embedded() {
		return errors.New("config: REDIS_URL: is required for a standalone worker (the api runs an in-process worker when it is unset)")
	}
	log := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	log.WithField("component", "relay").Info(relay.Describe(cfg))
	redisOpt, err := jobs.RedisOpt(cfg.RedisURL)
	if err != nil {
		return err
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
	w, err := worker.New(worker.Deps{Config: cfg, Log: log, Redis: redisOpt, Prefect: pc, Registry: reg, Proxy: svc, PollInterval: cfg.WorkerPollInterval})
	if err != nil {
		return err
	}
	if err := w.Ready(ctx); err != nil {
		return fmt.Errorf("worker: redis at REDIS_URL not reachable: %w", err)
	}
	if err := w.RefuseCluster(ctx); err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer func() {
		log.Info("worker shutting down: finishing in-flight jobs")
		w.Shutdown()
		log.Info("worker stopped")
	}()
	return httpapi.Serve(ctx, cfg.WorkerListenAddr, w.OpsHandler(), func(a net.Addr) {
		fmt.Fprintf(stdout, "worker ops listening on http://%s\n", a)
		log.WithField("addr", a.String()).Info("worker started")
	})
}
