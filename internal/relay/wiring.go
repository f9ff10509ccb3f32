package relay

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// API is the api process's side of the relay: the ingress and the
// dead-letter admin.
type API struct {
	Ingress *Ingress
	Admin   *Admin
}

// NewAPI wires the relay's api side on rdb (the api's Redis connection).
// With the relay off (config.RelayEnabled) there is no ingress; the
// dead-letter admin stays, so deliveries archived before it was turned off
// can still be seen and replayed later.
func NewAPI(cfg config.Config, rdb redis.UniversalClient, log logrus.FieldLogger, reg prometheus.Registerer) *API {
	a := &API{Admin: &Admin{Inspector: asynq.NewInspectorFromRedisClient(rdb)}}
	if !cfg.RelayEnabled() {
		return a
	}
	a.Ingress = &Ingress{
		Queue:    asynq.NewClientFromRedisClient(rdb),
		Key:      cfg.RelayInboundKey,
		States:   NewStateFilter(cfg.RelayStates),
		MaxRetry: MaxRetries(cfg.RelayRetrySchedule),
		Log:      log,
		metrics:  newInboundMetrics(reg),
	}
	return a
}

// NewStreamIngress is the ingress a worker feeds Prefect's event stream
// into (internal/events): the api's pipeline, without the api's inbound
// counter (the stream counts its own events; in embedded mode the api
// registers that counter on the same registry).
func NewStreamIngress(cfg config.Config, rdb redis.UniversalClient, log logrus.FieldLogger) *Ingress {
	return &Ingress{
		Queue:    asynq.NewClientFromRedisClient(rdb),
		Key:      cfg.RelayInboundKey,
		States:   NewStateFilter(cfg.RelayStates),
		MaxRetry: MaxRetries(cfg.RelayRetrySchedule),
		Log:      log,
	}
}

// Worker is the worker process's side: the delivery handler and the
// reconciler, a periodic task on the maintenance queue.
type Worker struct {
	Handler    *Handler
	Reconciler *Reconciler
	schedule   []time.Duration
	rdb        redis.UniversalClient
	log        logrus.FieldLogger
	scheduler  *asynq.Scheduler
	stopProbe  context.CancelFunc
}

// NewWorker wires the delivery handler and the reconciler on rdb. Callers
// build it only when the relay is on (config.RelayEnabled).
func NewWorker(cfg config.Config, rdb redis.UniversalClient, pc *prefect.Client, log logrus.FieldLogger, reg prometheus.Registerer) *Worker {
	m := NewMetrics(reg)
	states := NewStateFilter(cfg.RelayStates)
	store := NewStore(rdb)
	django := NewDjango(cfg.DjangoWebhookURL, cfg.NotificationKey)
	if cfg.DjangoWebhookURL != nil {
		// Latency of every POST to Django by status (internal/obs).
		django.HTTP.Transport = obs.NewUpstream(reg).Transport(django.HTTP.Transport, "django", obs.FixedRoute(cfg.DjangoWebhookURL.Path))
	}
	catchUp := NewCatchUp(rdb, log)
	overlap := 2 * cfg.RelayReconcileInterval
	if overlap < time.Minute {
		overlap = time.Minute
	}
	return &Worker{
		schedule: cfg.RelayRetrySchedule,
		rdb:      rdb,
		log:      log,
		Handler: &Handler{
			Store:   store,
			Django:  django,
			Prefect: pc,
			States:  states,
			Log:     log,
			Metrics: m,
			CatchUp: catchUp,
		},
		Reconciler: &Reconciler{
			Prefect:    pc,
			Redis:      rdb,
			Store:      store,
			Queue:      asynq.NewClientFromRedisClient(rdb),
			States:     states,
			Interval:   cfg.RelayReconcileInterval,
			Overlap:    overlap,
			MaxRetry:   MaxRetries(cfg.RelayRetrySchedule),
			AfterSetup: !cfg.RelayReconcileExplicit,
			Log:        log,
			Metrics:    m,
		},
	}
}

// RetryDelay is the asynq RetryDelayFunc for TaskType.
func (w *Worker) RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	return RetryDelay(w.schedule, n, err)
}

// Start schedules the reconciler (RELAY_RECONCILE_INTERVAL=0: off): this
// worker's asynq scheduler enqueues TaskReconcile on the maintenance queue
// every interval, and once now, so the first start takes its cursor at the
// start of the process. With several workers each one's scheduler enqueues
// it; asynq.Unique drops a copy while one is waiting, and the lease in Tick
// lets one scan per interval run. The tasks and the schedulers are visible
// in /monitoring/.
//
// It also starts the catch-up's probe of a failing Django (CatchUp).
func (w *Worker) Start() {
	if w == nil {
		return
	}
	if w.Handler.CatchUp != nil && w.stopProbe == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w.stopProbe = cancel
		go w.Handler.CatchUp.run(ctx)
	}
	if w.Reconciler.Interval <= 0 || w.Reconciler.Prefect == nil {
		return
	}
	r := w.Reconciler
	task := asynq.NewTask(TaskReconcile, nil)
	opts := []asynq.Option{asynq.Queue(jobs.QueueMaintenance), asynq.Unique(max(r.Interval, time.Second)),
		asynq.MaxRetry(0), asynq.Timeout(10 * time.Minute)}
	enqueued := func(_ *asynq.TaskInfo, err error) {
		if err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
			w.log.WithError(err).Warn("relay reconciler: cannot queue the scan")
		}
	}
	w.scheduler = asynq.NewSchedulerFromRedisClient(w.rdb, &asynq.SchedulerOpts{
		Logger: jobs.AsynqLogger(w.log), PostEnqueueFunc: enqueued})
	if _, err := w.scheduler.Register("@every "+r.Interval.String(), task, opts...); err != nil {
		w.log.WithError(err).Error("relay reconciler: cannot schedule the scan")
		return
	}
	if err := w.scheduler.Start(); err != nil {
		w.log.WithError(err).Error("relay reconciler: cannot start the scheduler")
		return
	}
	_, err := asynq.NewClientFromRedisClient(w.rdb).Enqueue(task, opts...)
	enqueued(nil, err)
}

// Stop ends the catch-up's probe and the reconciler's scheduler (a scan already queued or running
// is the asynq server's, which the worker shuts down).
func (w *Worker) Stop() {
	if w != nil && w.stopProbe != nil {
		w.stopProbe()
	}
	if w != nil && w.scheduler != nil {
		w.scheduler.Shutdown()
	}
}

// Admin lists and replays archived deliveries (dead letters).
type Admin struct {
	Inspector *asynq.Inspector
}

// DeadLetter is an archived delivery.
type DeadLetter struct {
	ID           string    `json:"id"`
	WebhookID    string    `json:"webhook_id,omitempty"`
	FlowRunID    string    `json:"flow_run_id"`
	Name         string    `json:"name,omitempty"`
	State        string    `json:"state,omitempty"`
	Source       string    `json:"source,omitempty"`
	Received     time.Time `json:"received,omitzero"`
	Attempts     int       `json:"attempts"`
	LastError    string    `json:"last_error"`
	LastFailedAt time.Time `json:"last_failed_at,omitzero"`
}

// ErrNotFound: no archived delivery with that id.
var ErrNotFound = errors.New("relay: no archived delivery with that id")

// List returns one page (1-based) of archived deliveries.
func (a *Admin) List(page, size int) ([]DeadLetter, int, error) {
	if ok, err := a.queueExists(); err != nil || !ok {
		return []DeadLetter{}, 0, err
	}
	info, err := a.Inspector.GetQueueInfo(jobs.QueueRelay)
	if err != nil {
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return []DeadLetter{}, 0, nil
		}
		return nil, 0, err
	}
	tasks, err := a.Inspector.ListArchivedTasks(jobs.QueueRelay, asynq.Page(page), asynq.PageSize(size))
	if err != nil {
		return nil, 0, err
	}
	out := make([]DeadLetter, 0, len(tasks))
	for _, t := range tasks {
		var n Notification
		_ = json.Unmarshal(t.Payload, &n)
		dl := DeadLetter{
			ID: t.ID, FlowRunID: n.FlowRunID, Name: n.Name, State: n.State, Source: n.Source, Received: n.Received,
			Attempts: t.Retried + 1, LastError: t.LastErr, LastFailedAt: t.LastFailedAt,
		}
		if n.Complete() {
			dl.WebhookID = WebhookID(n)
		}
		out = append(out, dl)
	}
	return out, info.Archived, nil
}

// Replay moves one archived delivery back to the queue. It keeps its task id,
// so dedupe still recognises it as the owner of its state change; it gets
// one more attempt (archived again if Django still refuses).
func (a *Admin) Replay(id string) error {
	err := a.Inspector.RunTask(jobs.QueueRelay, id)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return ErrNotFound
	}
	return err
}

// ReplayAll moves every archived delivery back to the queue.
func (a *Admin) ReplayAll() (int, error) {
	if ok, err := a.queueExists(); err != nil || !ok {
		return 0, err
	}
	n, err := a.Inspector.RunAllArchivedTasks(jobs.QueueRelay)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return 0, nil
	}
	return n, err
}

// queueExists reports whether asynq knows the relay queue. Until the first
// delivery is queued it does not, and asynq's GetQueueInfo and
// RunAllArchivedTasks then return an internal not-found error that does not
// match ErrQueueNotFound; on a fresh install that is "no dead letters", not
// an outage.
func (a *Admin) queueExists() (bool, error) {
	queues, err := a.Inspector.Queues()
	if err != nil {
		return false, err
	}
	return slices.Contains(queues, jobs.QueueRelay), nil
}
