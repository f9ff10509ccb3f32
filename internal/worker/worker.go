// Package worker is the job-executing side of the proxy: the asynq server
// with every task handler, and its small ops HTTP surface. cmd/worker runs it
// as its own process; cmd/api runs one in-process in embedded mode.
package worker

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/adaptive"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/events"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

// Deps are the worker's collaborators.
type Deps struct {
	Config config.Config
	Log    *logrus.Logger
	// Redis is the process's one Redis client, shared with the asynq
	// server; the caller closes it after Shutdown.
	Redis    redis.UniversalClient
	Prefect  *prefect.Client
	Registry *prometheus.Registry
	// Ops are the write operations to execute.
	Ops *jobs.Registry
	// ShutdownTimeout bounds how long in-flight jobs may finish on SIGTERM
	// before they go back to the queue; default 20 s.
	ShutdownTimeout time.Duration
	// Wakeup announces queued tasks to idle workers (jobs.Wakeup); nil: the
	// worker installs one on Redis and closes it on Shutdown.
	Wakeup *jobs.Wakeup
	// PollInterval is how often an idle worker looks for jobs when no
	// wake-up came (default jobs.DefaultPollInterval).
	PollInterval time.Duration
	// EventObservers learn of every flow-run state event the event-stream
	// subscriber handles (events.Observer), e.g. a cache of terminal runs.
	EventObservers []events.Observer
}

// Worker executes jobs until Shutdown.
type Worker struct {
	d   Deps
	rdb redis.UniversalClient
	// Two pools, so neither workload can take the other's capacity: write
	// serves the write jobs' queues (critical, default) with
	// WORKER_CONCURRENCY; relayPool serves relay deliveries and the
	// reconciler (relay, maintenance) with RELAY_CONCURRENCY, and is nil
	// while the relay is off. A delivery holds its slot for Django's whole
	// timeout: with shared slots a slow Django stalled every write.
	write     *pool
	relayPool *pool
	closed    chan struct{}
	// delays picks the retry delay per task type (write jobs back off per
	// "Jobs" in docs/ARCHITECTURE.md; relay deliveries follow RELAY_RETRY_SCHEDULE).
	delays map[string]asynq.RetryDelayFunc
	relay  *relay.Worker // notification deliveries and the reconciler (internal/relay)
	// events reads Prefect's event stream into the relay (nil: RELAY_EVENTS
	// off or the relay off); one worker process at a time holds its lease.
	events     *events.Subscriber
	stopEvents context.CancelFunc
	eventsDone chan struct{}
	// sweeper re-queues the tasks of dead worker processes soon enough for
	// a synchronous caller (jobs.Sweeper).
	sweeper     *jobs.Sweeper
	stopSweeper context.CancelFunc
	sweeperDone chan struct{}
}

// New builds a worker with every write op registered; Start begins fetching jobs.
func New(d Deps) (*Worker, error) {
	if d.Wakeup == nil {
		d.Wakeup = jobs.NewWakeup(d.Redis, d.Log.WithField("component", "jobs"))
	}
	w := &Worker{
		d:      d,
		rdb:    d.Redis,
		closed: make(chan struct{}),
		delays: map[string]asynq.RetryDelayFunc{},
	}
	m := newPoolMetrics(d.Registry)
	weights := jobs.QueueWeights()
	w.write = w.newPool(m, poolWrite, d.Config.WorkerConcurrency, jobs.DefaultConcurrency,
		map[string]int{jobs.QueueCritical: weights[jobs.QueueCritical], jobs.QueueDefault: weights[jobs.QueueDefault]})
	if d.Config.RelayEnabled() {
		// Off, no pool takes the relay's queues: deliveries queued while the
		// relay was on wait, visible in /monitoring/, until it is on again.
		w.relayPool = w.newPool(m, poolRelay, d.Config.RelayConcurrency, jobs.DefaultRelayConcurrency,
			map[string]int{jobs.QueueRelay: weights[jobs.QueueRelay], jobs.QueueMaintenance: weights[jobs.QueueMaintenance]})
	}
	runner, err := jobs.NewRunner(jobs.RunnerConfig{
		Key:         d.Config.JobEncryptionKey,
		Redis:       w.rdb,
		Log:         d.Log.WithField("component", "jobs"),
		Registry:    d.Registry,
		RetryWindow: d.Config.JobRetryWindow,
		Limiter:     writeLimiter(d),
	})
	if err != nil {
		return nil, err
	}
	w.sweeper = jobs.NewSweeper(jobs.SweeperConfig{Redis: w.rdb, Log: d.Log.WithField("component", "jobs"), Registry: d.Registry})
	if d.Ops != nil {
		runner.Mount(d.Ops, w.Handle)
	}
	// Relay: deliveries to Django on RELAY_RETRY_SCHEDULE, and the reconciler,
	// only once the relay is turned on (PREFECT_NOTIFICATIONS_WEBHOOK_KEY).
	if d.Config.RelayEnabled() {
		w.relay = relay.NewWorker(d.Config, w.rdb, d.Prefect, d.Log.WithField("component", "relay"), d.Registry)
		w.handleOn(w.relayPool, relay.TaskType, w.relay.Handler, w.relay.RetryDelay)
		w.handleOn(w.relayPool, relay.TaskReconcile, asynq.HandlerFunc(w.relay.Reconciler.ProcessTask), nil)
	}
	if d.Config.RelayEvents() {
		w.events = newEventsSubscriber(d)
	}
	return w, nil
}

// writeLimiter is the adaptive limit of write jobs calling Prefect at once
// (WORKER_ADAPTIVE_LIMIT), per process, capped by WORKER_CONCURRENCY; nil
// when off. Prefect on SQLite answers 503 once a few writers contend for its
// lock: a fixed concurrency either storms it (503s, retries seconds apart) or
// under-uses a PostgreSQL-backed Prefect.
func writeLimiter(d Deps) *adaptive.Limiter {
	if !d.Config.WorkerAdaptiveLimit {
		return nil
	}
	c := adaptive.Config{Max: d.Config.WorkerConcurrency, Name: "prefect_writes"}
	if c.Max <= 0 {
		c.Max = jobs.DefaultConcurrency
	}
	if d.Registry != nil {
		c.Registry = d.Registry
	}
	return adaptive.New(c)
}

// Handle registers a write-job handler (served by the write pool) and its
// retry delay (nil: asynq's default). Call it before Start.
func (w *Worker) Handle(taskType string, h asynq.Handler, delay asynq.RetryDelayFunc) {
	w.handleOn(w.write, taskType, h, delay)
}

func (w *Worker) handleOn(p *pool, taskType string, h asynq.Handler, delay asynq.RetryDelayFunc) {
	p.mux.Handle(taskType, h)
	if delay != nil {
		w.delays[taskType] = delay
	}
}

func (w *Worker) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if f, ok := w.delays[t.Type()]; ok {
		return f(n, err, t)
	}
	return asynq.DefaultRetryDelayFunc(n, err, t)
}

// Start connects to Redis and begins processing.
func (w *Worker) Start() error {
	if err := w.write.start(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if w.relayPool != nil {
		if err := w.relayPool.start(); err != nil {
			w.write.srv.Shutdown()
			return fmt.Errorf("worker (relay pool): %w", err)
		}
	}
	w.relay.Start()
	if w.events != nil {
		ctx, cancel := context.WithCancel(context.Background())
		w.stopEvents, w.eventsDone = cancel, make(chan struct{})
		go func() {
			defer close(w.eventsDone)
			w.events.Run(ctx)
		}()
	}
	if w.d.Config.Embedded() {
		// The embedded Redis lives and dies with this process, and so do
		// its tasks: no other worker can die holding one.
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stopSweeper, w.sweeperDone = cancel, make(chan struct{})
	go func() {
		defer close(w.sweeperDone)
		w.sweeper.Run(ctx)
	}()
	return nil
}

// Shutdown stops fetching, waits for in-flight jobs (bounded by the server's
// ShutdownTimeout) and hands unfinished ones back to the queue. The Redis
// client stays open (the caller's).
func (w *Worker) Shutdown() {
	if w.stopSweeper != nil {
		w.stopSweeper()
		<-w.sweeperDone
	}
	if w.stopEvents != nil {
		// First, so the lease and events:live are released at once and
		// another worker takes over the stream.
		w.stopEvents()
		<-w.eventsDone
	}
	w.relay.Stop()
	// Idle processors stop waiting for wake-ups, so the pools stop at once.
	w.d.Wakeup.Close()
	// Both pools drain at once, so shutdown takes one ShutdownTimeout.
	var wg sync.WaitGroup
	for _, p := range []*pool{w.write, w.relayPool} {
		if p != nil {
			wg.Go(p.srv.Shutdown)
		}
	}
	wg.Wait()
}

// Ready reports whether Redis answers.
func (w *Worker) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return w.rdb.Ping(ctx).Err()
}

// OpsHandler serves /livez, /readyz and /metrics for the worker process.
func (w *Worker) OpsHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /livez", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"status":"ok"}`))
	})
	// Redis decides readiness; ?verbose also reports Prefect and Django.
	checks := obs.Checks(w.d.Config, w.rdb, w.d.Prefect)
	if w.events != nil {
		checks = append(checks, w.events.ReadyCheck())
	}
	m.Handle("GET /readyz", obs.ReadyHandler(checks))
	m.Handle("GET /metrics", obs.RequireToken(w.d.Config.MetricsToken, promhttp.HandlerFor(w.d.Registry, promhttp.HandlerOpts{})))
	return m
}

// newEventsSubscriber wires the event-stream source: Prefect's stream
// (authenticated as the REST client is) into the relay's ingress, with
// d.EventObservers.
func newEventsSubscriber(d Deps) *events.Subscriber {
	cfg := d.Config
	log := d.Log.WithField("component", "events")
	header := http.Header{}
	token := cfg.PrefectAPIKey
	switch {
	case cfg.PrefectAPIKey != "":
		header.Set("Authorization", "Bearer "+cfg.PrefectAPIKey)
	case cfg.PrefectAuthString != "":
		header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cfg.PrefectAuthString)))
		token = cfg.PrefectAuthString
	}
	return events.New(events.Config{
		Prefect:   d.Prefect,
		StreamURL: events.StreamURL(cfg.PrefectURL.String()),
		Token:     token,
		Header:    header,
		Redis:     d.Redis,
		Ingress:   relay.NewStreamIngress(cfg, d.Redis, log),
		Key:       cfg.RelayInboundKey,
		Observers: d.EventObservers,
		Log:       log,
		Registry:  d.Registry,
	})
}
