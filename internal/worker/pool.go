package worker

import (
	"context"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// Pool names, the "pool" label of the pool metrics.
const (
	poolWrite = "write"
	poolRelay = "relay"
)

// pool is one asynq server with its own queues, concurrency and handlers.
type pool struct {
	name     string
	srv      *asynq.Server
	mux      *asynq.ServeMux
	inFlight prometheus.Gauge
}

type poolMetrics struct {
	concurrency *prometheus.GaugeVec
	inFlight    *prometheus.GaugeVec
}

func newPoolMetrics(reg prometheus.Registerer) *poolMetrics {
	m := &poolMetrics{
		concurrency: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "proxy_worker_pool_concurrency",
			Help: "Configured parallel tasks of a worker pool (write: WORKER_CONCURRENCY, relay: RELAY_CONCURRENCY).",
		}, []string{"pool"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "proxy_worker_pool_in_flight",
			Help: "Tasks a worker pool is running now; at its concurrency, the pool is saturated.",
		}, []string{"pool"}),
	}
	if reg != nil {
		reg.MustRegister(m.concurrency, m.inFlight)
	}
	return m
}

// newPool builds a pool serving queues with concurrency (default def when not positive).
func (w *Worker) newPool(m *poolMetrics, name string, concurrency, def int, queues map[string]int) *pool {
	if concurrency <= 0 {
		concurrency = def
	}
	m.concurrency.WithLabelValues(name).Set(float64(concurrency))
	return &pool{
		name:     name,
		mux:      asynq.NewServeMux(),
		inFlight: m.inFlight.WithLabelValues(name),
		srv: jobs.NewServer(w.d.Redis, jobs.ServerConfig{
			Queues:          queues,
			Concurrency:     concurrency,
			ShutdownTimeout: w.d.ShutdownTimeout,
			Wakeup:          w.d.Wakeup,
			PollInterval:    w.d.PollInterval,
			Log:             w.d.Log.WithField("component", "worker").WithField("pool", name),
			RetryDelay:      w.retryDelay,
		}),
	}
}

func (p *pool) start() error {
	return p.srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		p.inFlight.Inc()
		defer p.inFlight.Dec()
		return p.mux.ProcessTask(ctx, t)
	}))
}
