package proxy

import (
	"context"
	"net/url"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

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
	if status == "" {
		status = "ONLINE"
	}
	seen := make(map[string]bool, len(pools))
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(FanOut)
	for _, pool := range named {
		if seen[pool] {
			continue
		}
		seen[pool] = true
		g.Go(func() error {
			rows, err := s.prefect.FilterAll(gctx, "/work_pools/"+url.PathEscape(pool)+"/workers/filter",
				map[string]any{"workers": map[string]any{"status": map[string]any{"any_": []string{status}}}}, 0)
			if prefect.IsNotFound(err) {
				s.log.WithField("work_pool", pool).Warn("workers filter: unknown work pool counts 0 workers")
				return nil
			}
			if err != nil {
				return err
			}
			total.Add(int64(len(rows)))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, routeErr(err, msg)
	}
	return int(total.Load()), nil
}
