package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/adaptive"
	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/retry"
)

// RunnerConfig configures the worker side of jobs.
type RunnerConfig struct {
	Key      []byte                // JOB_ENCRYPTION_KEY
	Redis    redis.UniversalClient // for publishing on DoneChannel
	Log      logrus.FieldLogger
	Registry prometheus.Registerer // job metrics; nil: none
	// RetryWindow is how long a job retries a retryable failure, counted
	// from its creation (JOB_RETRY_WINDOW); default DefaultRetryWindow.
	RetryWindow time.Duration
	// Now is the clock the window is checked against; nil: time.Now.
	Now func() time.Time
	// Limiter, if set, bounds the calls to Prefect that jobs make at once,
	// adapting to Prefect's capacity: a job's context carries it
	// (adaptive.WithLimiter), and the Prefect client's transport
	// (adaptive.Transport) makes each call wait for a slot and report its
	// outcome. Nil: WORKER_CONCURRENCY alone bounds them.
	Limiter *adaptive.Limiter
}

// Runner turns registered Ops into asynq handlers: it opens the sealed payload, runs the
// op, seals its answer into the task's result, decides retry or fail, and
// wakes the api's waiters.
type Runner struct {
	cfg     RunnerConfig
	sealer  *Sealer
	metrics *runnerMetrics
}

// NewRunner builds a Runner.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	s, err := NewSealer(cfg.Key)
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		cfg.Log = l
	}
	if cfg.RetryWindow <= 0 {
		cfg.RetryWindow = DefaultRetryWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Runner{cfg: cfg, sealer: s}
	if cfg.Registry != nil {
		r.metrics = newRunnerMetrics(cfg.Registry)
	}
	return r, nil
}

// Mount hands handle every op of reg: its kind, its asynq handler and its
// retry delay.
func (r *Runner) Mount(reg *Registry, handle func(kind string, h asynq.Handler, delay asynq.RetryDelayFunc)) {
	for kind, op := range reg.ops {
		handle(kind, asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			return r.process(ctx, op, t)
		}), op.delay)
	}
}

func (r *Runner) process(ctx context.Context, op registered, t *asynq.Task) error {
	id := t.ResultWriter().TaskID()
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	attempt := retried + 1
	log := r.cfg.Log.WithFields(logrus.Fields{"job_id": id, "job_type": op.kind(), "attempt": attempt})
	start := time.Now()

	plain, err := r.sealer.Open(t.Payload(), payloadAAD(t.Type(), id))
	var env envelope
	if err == nil {
		err = json.Unmarshal(plain, &env)
	}
	if err != nil {
		log.Error("job payload cannot be opened: is JOB_ENCRYPTION_KEY the same on api and workers?")
		r.observe(op.kind(), "failed", start, true)
		r.finish(ctx, t, id, outcome{Final: true, Status: http.StatusInternalServerError, Attempt: attempt,
			Body: detailBody("the job's payload cannot be decrypted by the worker (JOB_ENCRYPTION_KEY mismatch)")})
		return fmt.Errorf("%s: payload cannot be opened: %w", op.kind(), asynq.SkipRetry)
	}
	if env.RequestID != "" {
		log = log.WithField("request_id", env.RequestID)
	}

	runKey := id
	if env.RunKey != "" {
		runKey = env.RunKey
	}
	body, runErr := op.work(adaptive.WithLimiter(ctx, r.cfg.Limiter), env.Payload, Run{Key: runKey, Attempt: attempt})
	if runErr == nil {
		return r.succeed(ctx, op, t, id, attempt, start, body)
	}
	if ctx.Err() != nil {
		// Shutdown (asynq re-queues the task) or the attempt's deadline (asynq
		// retries it): no answer is written, the job is not over.
		r.observe(op.kind(), "interrupted", start, false)
		return fmt.Errorf("%s: attempt %d interrupted: %w", op.kind(), attempt, ctx.Err())
	}
	return r.fail(ctx, op, t, failure{id: id, attempt: attempt, retried: retried, maxRetry: maxRetry,
		start: start, created: env.CreatedAt, log: log, err: runErr})
}

// succeed records a job's answer.
func (r *Runner) succeed(ctx context.Context, op registered, t *asynq.Task, id string, attempt int, start time.Time, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		r.observe(op.kind(), "failed", start, true)
		r.finish(ctx, t, id, outcome{Final: true, Status: http.StatusInternalServerError, Attempt: attempt, Body: detailBody("internal error")})
		return fmt.Errorf("%s: result not encodable: %w", op.kind(), asynq.SkipRetry)
	}
	r.observe(op.kind(), "succeeded", start, false)
	r.finish(ctx, t, id, outcome{Final: true, Status: http.StatusOK, Attempt: attempt, Body: data})
	return nil
}

// failure is one failed attempt of a job.
type failure struct {
	id                         string
	attempt, retried, maxRetry int
	start, created             time.Time
	log                        logrus.FieldLogger
	err                        error
}

// fail records a failed attempt: the answer to replay, and whether asynq
// retries it (a retryable failure inside the job's retry window and attempts).
func (r *Runner) fail(ctx context.Context, op registered, t *asynq.Task, f failure) error {
	runErr, attempt, retried, maxRetry, start, id, log := f.err, f.attempt, f.retried, f.maxRetry, f.start, f.id, f.log
	retry := op.retryable(runErr)
	// An outage is measured in time: a retryable failure is retried until
	// the job is RetryWindow old; MaxRetry (JOB_MAX_ATTEMPTS) is a backstop.
	windowPassed := retry && !f.created.IsZero() && r.cfg.Now().Sub(f.created) >= r.cfg.RetryWindow
	final := !retry || windowPassed || retried >= maxRetry
	ae := r.answer(runErr)
	data, _ := json.Marshal(ae.Body())
	// Metrics first, then the answer: whoever sees the answer sees the count.
	if final {
		r.observe(op.kind(), "failed", start, true)
	} else {
		r.observe(op.kind(), "retrying", start, false)
	}
	r.finish(ctx, t, id, outcome{Final: final, Status: ae.Status(), Attempt: attempt, Body: data})
	// The text asynq stores (and /monitoring/ shows) is built here, not taken
	// from runErr: Prefect's error bodies may echo a request with a secret.
	msg := fmt.Sprintf("%s: attempt %d: %d %s", op.kind(), attempt, ae.Status(), truncate(ae.Message, 200))
	switch {
	case !retry:
		log.WithField("status", ae.Status()).Warn("job failed (not retryable)")
		return fmt.Errorf("%s: %w", msg, asynq.SkipRetry)
	case windowPassed:
		log.WithFields(logrus.Fields{"status": ae.Status(), "retry_window": r.cfg.RetryWindow.String()}).
			Error("job failed: still failing when its retry window passed")
		return fmt.Errorf("%s: %w", msg, asynq.SkipRetry)
	case final:
		log.WithField("status", ae.Status()).Error("job failed: attempts exhausted")
		return errors.New(msg)
	default:
		log.WithField("status", ae.Status()).Info("job attempt failed; will retry")
		return errors.New(msg)
	}
}

// answer is the HTTP answer a failed job replays: the op's own (the proxy's
// ops translate every failure into the route's answer), else a 502.
func (r *Runner) answer(err error) *apperr.Error {
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return ae
	}
	return apperr.Wrap(apperr.Upstream, err, "the job failed")
}

// finish seals the outcome into the task's result and, when final, wakes the
// api's waiters.
func (r *Runner) finish(ctx context.Context, t *asynq.Task, id string, o outcome) {
	o.At = time.Now().UTC()
	plain, _ := json.Marshal(o)
	sealed := r.sealer.Seal(plain, resultAAD(id))
	// Through a failover of the Redis primary: the work is done in Prefect,
	// and a lost answer would make the job run again.
	if err := Persist(ctx, func(context.Context) error {
		_, err := t.ResultWriter().Write(sealed)
		return err
	}); err != nil {
		r.cfg.Log.WithError(err).WithField("job_id", id).Warn("cannot write job result")
	}
	if o.Final && r.cfg.Redis != nil {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := r.cfg.Redis.Publish(pctx, DoneChannel, id).Err(); err != nil {
			r.cfg.Log.WithError(err).WithField("job_id", id).Warn("cannot publish job completion; waiters will poll")
		}
	}
}

func (r *Runner) observe(typ, outcome string, start time.Time, failed bool) {
	if r.metrics == nil {
		return
	}
	r.metrics.processed.WithLabelValues(typ, outcome).Inc()
	r.metrics.duration.WithLabelValues(typ).Observe(time.Since(start).Seconds())
	if failed {
		r.metrics.failed.WithLabelValues(typ).Inc()
	}
}

// RetryDelay is the asynq RetryDelayFunc for write jobs; n is the number of
// retries already made. The policy ("Jobs" in docs/ARCHITECTURE.md): first
// retry within a second, doubling, capped at RetryDelayCap with ±20 % jitter,
// so once Prefect is back the next attempt comes within a minute.
func RetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	return retry.Exponential{Base: 500 * time.Millisecond, Max: RetryDelayCap}.Delay(n)
}

// RetryDelayCap is the longest step of RetryDelay before jitter (at most
// 60 s with it).
const RetryDelayCap = 50 * time.Second

type runnerMetrics struct {
	processed *prometheus.CounterVec
	failed    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newRunnerMetrics(reg prometheus.Registerer) *runnerMetrics {
	m := &runnerMetrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_jobs_processed_total",
			Help: "Job attempts by type and outcome (succeeded, retrying, failed, interrupted).",
		}, []string{"type", "outcome"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_jobs_failed_total",
			Help: "Jobs that failed for good (not retryable, or attempts exhausted), by type.",
		}, []string{"type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proxy_job_duration_seconds",
			Help:    "Duration of one job attempt, by type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"type"}),
	}
	reg.MustRegister(m.processed, m.failed, m.duration)
	return m
}

func detailBody(msg string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"detail": msg})
	return b
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
