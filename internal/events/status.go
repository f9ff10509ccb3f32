package events

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
)

// Status is the event stream's state as one worker sees it: its own role
// and the shared state in Redis. /readyz?verbose shows it.
type Status struct {
	// Role is "subscriber" (this process holds the lease) or "standby".
	Role      string `json:"role"`
	Connected bool   `json:"connected"` // this process's connection (subscriber only)
	// Live is whether any subscriber is connected and backfilled
	// (events:live holds a generation).
	Live           bool       `json:"live"`
	LiveGeneration int64      `json:"live_generation,omitempty"`
	Holder         string     `json:"holder,omitempty"` // the lease's holder
	Cursor         *time.Time `json:"cursor,omitempty"`
	CursorEventID  string     `json:"cursor_event_id,omitempty"`
	// CursorAgeSeconds is how far behind now the cursor is (it only moves
	// with events, so an idle Prefect makes it old: not a fault by itself).
	CursorAgeSeconds float64    `json:"cursor_age_seconds,omitempty"`
	LastLiveEvent    *time.Time `json:"last_live_event,omitempty"`
	LastError        string     `json:"last_error,omitempty"`
}

// Status reads the stream's state.
func (s *Subscriber) Status(ctx context.Context) (Status, error) {
	s.mu.Lock()
	local := s.state
	s.mu.Unlock()
	st := Status{Role: "standby", Connected: local.connected, LastError: local.lastErr}
	if local.leader {
		st.Role = "subscriber"
	}
	if !local.lastEvent.IsZero() {
		t := local.lastEvent.UTC()
		st.LastLiveEvent = &t
	}
	pipe := s.cfg.Redis.Pipeline()
	live := pipe.Get(ctx, KeyLive)
	holder := pipe.Get(ctx, KeyLease)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return st, err
	}
	if g, err := strconv.ParseInt(live.Val(), 10, 64); err == nil {
		st.Live, st.LiveGeneration = true, g
	}
	st.Holder = holder.Val()
	c, ok, err := loadCursor(ctx, s.cfg.Redis)
	if err != nil {
		return st, err
	}
	if ok {
		st.Cursor, st.CursorEventID = &c.Occurred, c.ID
		st.CursorAgeSeconds = time.Since(c.Occurred).Seconds()
	}
	return st, nil
}

// ReadyCheck is the worker's "events" readiness check, reported only (not
// required: the webhook and the reconciler still work without the stream).
// It fails while no subscriber is live, and, in the subscriber, while it is
// not connected; its detail is the Status.
func (s *Subscriber) ReadyCheck() obs.Check {
	return obs.Check{Name: "events", Probe: func(ctx context.Context) error {
		st, err := s.Status(ctx)
		if err != nil {
			return err
		}
		return st.problem()
	}, Detail: func(ctx context.Context) any {
		st, _ := s.Status(ctx)
		return st
	}}
}

func (st Status) problem() error {
	switch {
	case st.Role == "subscriber" && !st.Connected:
		msg := "not connected to Prefect's event stream"
		if st.LastError != "" {
			msg += ": " + st.LastError
		}
		return errors.New(msg)
	case !st.Live:
		return errors.New("no subscriber is live on Prefect's event stream (connecting, backfilling, or no worker holds the lease)")
	}
	return nil
}
