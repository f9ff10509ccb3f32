// Command worker executes the proxy's jobs and relay deliveries. Run any
// number of them against one Redis (REDIS_URL is required).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
	"github.com/DalgoT4D/prefect-proxy-go/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(config.Env(getenv, ".env"))
	if err != nil {
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
	if err := w.Start(); err != nil {
		return err
	}
	defer func() {
		log.Info("worker shutting down: finishing in-flight jobs")
		w.Shutdown()
		log.Info("worker stopped")
	}()
	return httpapi.Serve(ctx, cfg.WorkerListenAddr, w.OpsHandler(), httpapi.LimitsFor(cfg), func(a net.Addr) {
		fmt.Fprintf(stdout, "worker ops listening on http://%s\n", a)
		log.WithField("addr", a.String()).Info("worker started")
	})
}
