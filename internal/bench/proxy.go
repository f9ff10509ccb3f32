package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// Proxy is the api's real read path — config.Load, prefect.Client,
// proxy.Service, httpapi.New with its middleware, metrics and JSON access log,
// served by httpapi.Serve — listening on loopback TCP, wired as cmd/api wires
// it (minus Redis and the worker, which reads do not touch).
type Proxy struct {
	URL  string // http://127.0.0.1:port
	stop context.CancelFunc
	done chan error
}

// StartProxy serves the api against the Prefect API root prefectAPI. Access
// logs are formatted as in production and written to logOut (io.Discard in
// benchmarks: formatting is measured, a terminal is not).
func StartProxy(prefectAPI string, logOut io.Writer) (*Proxy, error) {
	env := map[string]string{"PREFECT_API_URL": prefectAPI, "LISTEN_ADDR": "127.0.0.1:0"}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	log := logging.New(logOut, cfg.LogLevel, cfg.LogFormat)
	pc := prefect.New(prefect.Config{BaseURL: cfg.PrefectURL, Timeout: cfg.PrefectTimeout})
	svc := proxy.New(pc, log)
	handler := httpapi.New(httpapi.Deps{
		Config:  cfg,
		Log:     log,
		Proxy:   svc,
		Metrics: httpapi.NewMetrics(prometheus.NewRegistry()),
		Ready:   func(*gin.Context) error { return nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	p := &Proxy{stop: cancel, done: make(chan error, 1)}
	go func() { p.done <- httpapi.Serve(ctx, cfg.ListenAddr, handler, func(a net.Addr) { addr <- a }) }()
	select {
	case a := <-addr:
		p.URL = "http://" + a.String()
		return p, nil
	case err := <-p.done:
		cancel()
		return nil, fmt.Errorf("proxy did not start: %w", err)
	case <-time.After(5 * time.Second):
		cancel()
		return nil, fmt.Errorf("proxy did not start in 5s")
	}
}

// Close stops the server and waits for it.
func (p *Proxy) Close() error {
	p.stop()
	return <-p.done
}
