package proxy

import (
	"context"
	"encoding/json"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Prefect's foreman service marks an ONLINE worker OFFLINE once its last
// heartbeat is older than interval × multiple (settings
// server.services.foreman.inactivity_heartbeat_multiple and
// fallback_heartbeat_interval_seconds, defaults 3 and 30).
const (
	heartbeatMultiple         = 3
	fallbackHeartbeatInterval = 30 * time.Second
)

// prefectWorker is the part of Prefect's WorkerResponse read here.
type prefectWorker struct {
	Status            string     `json:"status"`
	LastHeartbeatTime *time.Time `json:"last_heartbeat_time"`
	HeartbeatInterval *float64   `json:"heartbeat_interval_seconds"`
}

// online applies the foreman's rule itself, so the count is right even where
// the foreman is off or has not run yet (Prefect servers started with
// services disabled keep dead workers ONLINE forever).
func (w prefectWorker) online(now time.Time) bool {
	if w.Status != "ONLINE" {
		return false
	}
	if w.LastHeartbeatTime == nil {
		return true // the foreman leaves these alone too
	}
	interval := fallbackHeartbeatInterval
	if w.HeartbeatInterval != nil && *w.HeartbeatInterval > 0 {
		interval = time.Duration(*w.HeartbeatInterval * float64(time.Second))
	}
	return now.Sub(*w.LastHeartbeatTime) <= heartbeatMultiple*interval
}

// CountWorkers is route 37: how many workers with the given status (ONLINE
// unless said otherwise) the work pools have, summed over pools; the default
// pool when pools is empty. The Python proxy counted `pm2 list` lines on its
// own host instead. Prefect does not tie workers to queues, so queue names
// cannot narrow the count.
//
// A pool Prefect does not know counts 0 workers: nothing can be polling a
// pool that does not exist, and Django uses the count only to estimate how
// long a queued run will wait.
func (s *Service) CountWorkers(ctx context.Context, pools []string, status string) (int, error) {
	const msg = "failed to fetch prefect workers"
	named := make([]string, 0, len(pools))
	for _, p := range pools {
		if p != "" {
			named = append(named, p)
		}
	}
	if len(named) == 0 {
		named = []string{s.DefaultWorkPool}
	}
	wantOnline := status == "" || status == "ONLINE"
	filter := map[string]any{}
	if wantOnline {
		// Only an ONLINE row can be online; an OFFLINE count needs every row.
		filter["workers"] = map[string]any{"status": map[string]any{"any_": []string{"ONLINE"}}}
	}
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	now := time.Now()
	seen := make(map[string]bool, len(named))
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(FanOut)
	for _, pool := range named {
		if seen[pool] {
			continue
		}
		seen[pool] = true
		g.Go(func() error {
			rows, err := s.prefect.FilterAll(gctx, "/work_pools/"+url.PathEscape(pool)+"/workers/filter", filter, 0)
			if prefect.IsNotFound(err) {
				s.log.WithField("work_pool", pool).Warn("workers filter: unknown work pool counts 0 workers")
				return nil
			}
			if err != nil {
				return err
			}
			for _, row := range rows {
				var w prefectWorker
				if err := json.Unmarshal(row, &w); err != nil {
					return apperr.Wrap(apperr.Upstream, err, "%s: unexpected answer from Prefect", msg)
				}
				if w.online(now) == wantOnline {
					total.Add(1)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, translate(err, failed(msg))
	}
	return int(total.Load()), nil
}
