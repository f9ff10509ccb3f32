// Command api serves the Django-facing HTTP API. With REDIS_URL unset it also
// starts an embedded Redis and an in-process worker, so one command runs all.
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
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
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
	return httpapi.Serve(ctx, cfg.ListenAddr, handler, func(addr net.Addr) {
		fmt.Fprintf(stdout, "api listening on http://%s (Prefect %s)\n", addr, cfg.PrefectURL)
		log.WithField("addr", addr.String()).Info("api listening")
	})
}
