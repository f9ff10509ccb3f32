// Command api serves the Django-facing HTTP API. With REDIS_URL unset it also
// starts an embedded Redis and an in-process worker, so one command runs all.
//
//	api               serve (configured by the environment; api --help lists it)
//	api healthcheck   exit 0 when this host's api answers /livez with 200, else 1
//	api --version     print the version and commit
package main

import (
	"context"
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
	Name:       "api",
	Synopsis:   "the Django-facing HTTP API of prefect-proxy (with REDIS_URL unset, also an embedded Redis and an in-process worker)",
	Usage:      "api [flags]          serve HTTP on LISTEN_ADDR\n  api healthcheck      exit 0 if the api on LISTEN_ADDR answers GET /livez with 200, else 1",
	Program:    config.API,
	Version:    version,
	Commit:     commit,
	HealthAddr: func(c config.Config) string { return c.ListenAddr },
}

// run serves until ctx ends, or runs the command in args. Errors carry their
// exit status (cli.ExitError); --help and --version return nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, done, err := cli.Prepare(ctx, command, args, getenv, stdout, stderr)
	if done {
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}

func serve(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	log := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	log.WithField("component", "relay").Info(relay.Describe(cfg))
	if cfg.Embedded() {
		log.Warn("REDIS_URL is unset: using an embedded in-memory Redis and an in-process worker; " +
			"jobs and notifications are NOT durable across restarts. Set REDIS_URL in production.")
	}
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if cfg.Embedded() {
		w, err := a.StartWorker()
		if err != nil {
			return err
		}
		defer w.Shutdown()
	}
	handler, err := a.API(ctx)
	if err != nil {
		return err
	}
	return httpapi.Serve(ctx, cfg.ListenAddr, handler, httpapi.LimitsFor(cfg), func(addr net.Addr) {
		fmt.Fprintf(stdout, "api listening on http://%s (Prefect %s)\n", addr, cfg.PrefectURL)
		log.WithField("addr", addr.String()).Info("api listening")
	})
}
