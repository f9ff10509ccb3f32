package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// backfillPage is Prefect's most per /events/filter page.
const backfillPage = 50

// backfill reads every flow-run event from from on through /events/filter,
// oldest first, following next_page, and handles each one. Pages are
// offset-based: an event persisted late with an older occurred time shifts
// the rest by one, so an event can come twice (harmless), never be skipped.
func (s *Subscriber) backfill(ctx context.Context, from time.Time) error {
	var page struct {
		Events   []json.RawMessage `json:"events"`
		NextPage string            `json:"next_page"`
	}
	until := time.Now().Add(time.Hour) // live events cover what comes after
	err := s.cfg.Prefect.PostRead(ctx, "/events/filter", map[string]any{
		"filter": stateFilter(from, until), "limit": backfillPage}, &page)
	for {
		if err != nil {
			return fmt.Errorf("events: backfill from %s: %w", from.Format(time.RFC3339), err)
		}
		for _, raw := range page.Events {
			ev, err := decodeEvent(raw)
			if err != nil {
				continue
			}
			if err := s.handle(ctx, ev, sourceBackfill); err != nil {
				return err
			}
		}
		token := pageToken(page.NextPage)
		if token == "" || len(page.Events) == 0 {
			return nil
		}
		page.Events, page.NextPage = nil, ""
		err = s.cfg.Prefect.Get(ctx, "/events/filter/next?page-token="+url.QueryEscape(token), &page)
	}
}

// pageToken is the page-token of a next_page URL. The URL names the host
// Prefect saw the request on; the token is asked of the configured API root
// instead, which also works behind a proxy that rewrites the host.
func pageToken(next string) string {
	if next == "" {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil {
		return ""
	}
	return u.Query().Get("page-token")
}
