package proxy

import (
	"context"
	"encoding/json"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
)

// finalStates is dbtTestFailed for the runs of a history listing (rows, with
// their ids), through the run cache: a finished run's verdict, once past
// RUN_CACHE_SETTLE, is computed once and then read from Redis, so a repeated
// history costs Prefect only its listing. snap was taken before the listing
// was read, so a state event after it keeps the verdicts out of the cache.
func (s *Service) finalStates(ctx context.Context, snap runcache.Snapshot, rows []json.RawMessage, ids []string) (map[string]bool, error) {
	runs := make([]runcache.EndedRun, len(rows))
	for i, r := range rows {
		var e struct {
			EndTime *time.Time `json:"end_time"`
			State   *struct {
				Timestamp *time.Time `json:"timestamp"`
			} `json:"state"`
		}
		_ = json.Unmarshal(r, &e) // a run without an end time is not cached
		runs[i].ID, runs[i].Fingerprint = ids[i], runcache.Fingerprint(r)
		switch {
		case e.EndTime != nil:
			runs[i].Ended = *e.EndTime
		case e.State != nil && e.State.Timestamp != nil:
			runs[i].Ended = *e.State.Timestamp
		}
	}
	return s.Cache.Flags(ctx, snap, runs, s.dbtTestFailed)
}

// forget drops a run's cached answers after the proxy changed the run
// itself, so the change is seen before Prefect's event arrives (a delete
// has no event at all). A failure is logged: the event, or the entry's TTL,
// still retires them.
func (s *Service) forget(ctx context.Context, runID string) {
	if err := s.Cache.Invalidate(ctx, runID); err != nil {
		s.log.WithError(err).WithField("flow_run_id", runID).Warn("run cache: could not drop the run's entries")
	}
}
