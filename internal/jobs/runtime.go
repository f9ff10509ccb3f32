// Package jobs runs the proxy's write operations as asynq tasks: the queues
// and their weights, the worker server, and the connection to Redis.
package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
)

// Queue names.
const (
	QueueCritical    = "critical"    // run, cancel, retry flow runs
	QueueDefault     = "default"     // deployments, blocks
	QueueRelay       = "relay"       // notification deliveries
	QueueMaintenance = "maintenance" // reconciler
)

// QueueWeights are asynq's weighted-priority settings ("Jobs" in docs/ARCHITECTURE.md).
func QueueWeights() map[string]int {
	return map[string]int{QueueCritical: 6, QueueDefault: 3, QueueRelay: 3, QueueMaintenance: 1}
}

// RedisOpt parses REDIS_URL (redis://, rediss://, redis-sentinel://).
func RedisOpt(redisURL string) (asynq.RedisConnOpt, error) {
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return opt, nil
}

// Connect opens the process's one Redis client for REDIS_URL: the api, the
// asynq server, the inspector and asynqmon all share it.
func Connect(redisURL string) (redis.UniversalClient, error) {
	opt, err := RedisOpt(redisURL)
	if err != nil {
		return nil, err
	}
	return opt.MakeRedisClient().(redis.UniversalClient), nil
}

// Embedded is an in-memory Redis for a one-command local run. Not durable.
type Embedded struct {
	mr   *miniredis.Miniredis
	stop chan struct{}
}

// StartEmbedded starts miniredis on a free loopback port.
func StartEmbedded() (*Embedded, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	e := &Embedded{mr: mr, stop: make(chan struct{})}
	// miniredis only expires keys when told time has passed.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-e.stop:
				return
			case now := <-t.C:
				mr.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return e, nil
}

// URL is the redis:// URL of the embedded server.
func (e *Embedded) URL() string { return "redis://" + e.mr.Addr() }

// Close stops the server.
func (e *Embedded) Close() {
	close(e.stop)
	e.mr.Close()
}

// Defaults of the worker settings (WORKER_CONCURRENCY, RELAY_CONCURRENCY,
// WORKER_POLL_INTERVAL).
const (
	DefaultConcurrency      = 10
	DefaultRelayConcurrency = 10
	// DefaultPollInterval is how often an idle worker with a Wakeup looks at
	// its queues although no wake-up came: the most a lost wake-up delays a
	// task (docs/BENCHMARKS.md, "Idle").
	DefaultPollInterval = time.Second
	// plainPollInterval is the default of a server without a Wakeup, which
	// has nothing but polling to find its tasks (tests, benchmarks).
	plainPollInterval = 5 * time.Millisecond
	// wokenCheckInterval is asynq's TaskCheckInterval with a Wakeup: the
	// pause before it looks at all its queues again after a look that found
	// none ready, which with a Wakeup happens only when a wake-up came for
	// a queue other than the last one looked at, or when the idle interval
	// ran out.
	wokenCheckInterval = time.Millisecond
	// delayedTaskCheckInterval is how often the forwarder moves due retries
	// (and scheduled tasks) back to their queue (asynq's default is 5 s). A
	// retry runs at most this much after it is due; asynq keeps due times in
	// whole seconds, so finer would not make retries more punctual. Each
	// look is two Lua scripts per queue, the main idle cost after polling.
	delayedTaskCheckInterval = time.Second
)

// ServerConfig configures a worker.
type ServerConfig struct {
	Concurrency     int
	ShutdownTimeout time.Duration
	Log             logrus.FieldLogger
	// RetryDelay picks the delay before a failed task's next attempt; nil
	// means asynq's default. internal/worker dispatches it by task type.
	RetryDelay asynq.RetryDelayFunc
	// Wakeup, when set, tells the server's idle processor that a task was
	// queued (see Wakeup), so it looks at its queues when told and every
	// PollInterval otherwise. Nil: it polls every PollInterval.
	Wakeup *Wakeup
	// PollInterval is how often an idle server looks at its queues when
	// nothing tells it to: default DefaultPollInterval with a Wakeup, 5 ms
	// without (asynq's TaskCheckInterval; each look costs a Lua script per
	// queue, so polling that often keeps a worker and its Redis busy).
	PollInterval time.Duration
	// Queues and their weights; nil: QueueWeights().
	Queues map[string]int
}

// NewServer builds the asynq server that executes jobs, on the process's
// Redis client (which it does not close).
func NewServer(rdb redis.UniversalClient, cfg ServerConfig) *asynq.Server {
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	if cfg.Queues == nil {
		cfg.Queues = QueueWeights()
	}
	check := cfg.PollInterval
	switch {
	case cfg.Wakeup != nil:
		if cfg.PollInterval <= 0 {
			cfg.PollInterval = DefaultPollInterval
		}
		queues := make([]string, 0, len(cfg.Queues))
		for q := range cfg.Queues {
			queues = append(queues, q)
		}
		cfg.Wakeup.Watch(context.Background(), queues, cfg.PollInterval)
		check = min(wokenCheckInterval, cfg.PollInterval)
	case check <= 0:
		check = plainPollInterval
	}
	return asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          cfg.Queues,
		ShutdownTimeout: cfg.ShutdownTimeout,
		// The pause between two looks at empty queues (see PollInterval).
		TaskCheckInterval: check,
		// Retries wait in asynq's retry set until the forwarder moves them
		// back; the move wakes the workers (Wakeup).
		DelayedTaskCheckInterval: delayedTaskCheckInterval,
		RetryDelayFunc:           cfg.RetryDelay,
		Logger:                   asynqLogger{cfg.Log},
		LogLevel:                 asynq.WarnLevel,
	})
}

// AsynqLogger routes asynq's logs (of a server, a scheduler) through logrus.
func AsynqLogger(l logrus.FieldLogger) asynq.Logger { return asynqLogger{l} }

// asynqLogger routes asynq's logs through logrus.
type asynqLogger struct{ l logrus.FieldLogger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(args...) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(args...) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(args...) }
func (a asynqLogger) Error(args ...any) { a.l.Error(args...) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(args...) }
