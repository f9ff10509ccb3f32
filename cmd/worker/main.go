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
	"os"
	"os/signal"
	"syscall"

	"github.com/DalgoT4D/prefect-proxy-go/internal/app"
	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	cli.Exit(err, os.Stderr)
}

// Set at build time: -ldflags "-X main.version=... -X main.commit=..."
// (make build, the Dockerfile); --version falls back to Go's VCS stamp.
var version, commit string

var command = cli.Command{
	Name:       "worker",
	Synopsis:   "runs prefect-proxy's write jobs and relay deliveries from Redis; start as many as needed",
	Usage:      "worker [flags]          work, with an ops port (/livez, /readyz, /metrics) on WORKER_LISTEN_ADDR\n  worker healthcheck      exit 0 if the worker on WORKER_LISTEN_ADDR answers GET /livez with 200, else 1",
	Program:    config.Worker,
	Version:    version,
	Commit:     commit,
	HealthAddr: func(c config.Config) string { return c.WorkerListenAddr },
}

// run works until ctx ends, or runs the command in args. Errors carry their
// exit status (cli.ExitError); --help and --version return nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, done, err := cli.Prepare(ctx, command, args, getenv, stdout, stderr)
	if done {
		return err
	}
	if cfg.Embedded() {
		return errors.New("config: REDIS_URL: is required for a standalone worker (the api runs an in-process worker when it is unset)")
	}
	log := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	log.WithField("component", "relay").Info(relay.Describe(cfg))
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Ping(ctx); err != nil {
		return fmt.Errorf("worker: redis at REDIS_URL not reachable: %w", err)
	}
	if err := jobs.RefuseCluster(ctx, a.Redis); err != nil {
		return err
	}
	w, err := a.StartWorker()
	if err != nil {
		return err
	}
	defer func() {
		log.Info("worker shutting down: finishing in-flight jobs")
		w.Shutdown()
		log.Info("worker stopped")
	}()
	return httpapi.Serve(ctx, cfg.WorkerListenAddr, w.OpsHandler(), httpapi.LimitsFor(cfg), func(addr net.Addr) {
		fmt.Fprintf(stdout, "worker ops listening on http://%s\n", addr)
		log.WithField("addr", addr.String()).Info("worker started")
	})
}
