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
	w, err := a.StartWorker()
	if err != nil {
		return err
	}
	defer func() {
		log.Info("worker shutting down: finishing in-flight jobs")
		w.Shutdown()
		log.Info("worker stopped")
	}()
	return httpapi.Serve(ctx, cfg.WorkerListenAddr, w.OpsHandler(), func(addr net.Addr) {
		fmt.Fprintf(stdout, "worker ops listening on http://%s\n", addr)
		log.WithField("addr", addr.String()).Info("worker started")
	})
}
