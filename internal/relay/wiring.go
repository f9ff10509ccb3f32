package relay

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
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
	m := NewMetrics(reg)
	a.Ingress = &Ingress{
		Queue:    asynq.NewClientFromRedisClient(rdb),
		Key:      cfg.RelayInboundKey,
		States:   NewStateFilter(cfg.RelayStates),
		MaxRetry: MaxRetries(cfg.RelayRetrySchedule),
		Log:      log,
		Metrics:  m,
	}
	return a
}

// Worker is the worker process's side: the delivery handler and the reconciler.
type Worker struct {
	Handler    *Handler
	Reconciler *Reconciler
	schedule   []time.Duration
	stop       context.CancelFunc
	done       sync.WaitGroup
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
	overlap := 2 * cfg.RelayReconcileInterval
	if overlap < time.Minute {
		overlap = time.Minute
	}
	return &Worker{
		schedule: cfg.RelayRetrySchedule,
		Handler: &Handler{
			Store:   store,
			Django:  django,
			Prefect: pc,
			States:  states,
			Log:     log,
			Metrics: m,
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

// Start runs the reconciler in the background (RELAY_RECONCILE_INTERVAL=0: off).
func (w *Worker) Start() {
	if w == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		w.Reconciler.Run(ctx)
	}()
}

// Stop ends the reconciler and waits for it.
func (w *Worker) Stop() {
	if w != nil && w.stop != nil {
		w.stop()
		w.done.Wait()
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
	n, err := a.Inspector.RunAllArchivedTasks(jobs.QueueRelay)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return 0, nil
	}
	return n, err
}
