package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

// setupKey records that relay-setup installed Prefect's automation towards
// the relay: from then on the relay, not Prefect, is Django's notification
// path, and the reconciler may fill its gaps. Before that, a reconciler would
// send Django every terminal state a second time (Prefect still calls Django
// directly), so it waits for this key unless RELAY_RECONCILE_INTERVAL is set.
const setupKey = "relay:setup"

// SetupRecord is what relay-setup leaves in Redis.
type SetupRecord struct {
	AutomationID string    `json:"automation_id"`
	URL          string    `json:"url"`
	SwitchedAt   time.Time `json:"switched_at"`
}

// RecordSetup marks the relay as Django's path since rec.SwitchedAt. The
// reconciler's first scan starts there (not at its own first tick), so a
// terminal state that fell between the old automation's end and the new
// one's start is still found; nothing before it is ever scanned. A cursor
// that already exists (the reconciler ran before, explicitly) is kept.
func RecordSetup(ctx context.Context, rdb redis.UniversalClient, rec SetupRecord) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	at := strconv.FormatInt(rec.SwitchedAt.UTC().UnixMicro(), 10)
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, originKey, at, 0)
		p.SetNX(ctx, cursorKey, at, 0)
		p.Set(ctx, setupKey, raw, 0)
		return nil
	})
	return err
}

// SetupRecorded returns relay-setup's record, or ok=false if it never ran
// against this Redis.
func SetupRecorded(ctx context.Context, rdb redis.UniversalClient) (rec SetupRecord, ok bool, err error) {
	raw, err := rdb.Get(ctx, setupKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, false, fmt.Errorf("relay: bad %s in Redis: %w", setupKey, err)
	}
	return rec, true, nil
}

// Describe is the one line api and worker log at start: what the relay does
// in this process and why.
func Describe(cfg config.Config) string {
	if !cfg.RelayEnabled() {
		why := "PREFECT_NOTIFICATIONS_WEBHOOK_KEY is unset"
		if cfg.RelayInboundKey != "" {
			why += " (RELAY_INBOUND_KEY alone cannot turn it on: the relay could not deliver to Django)"
		}
		return "relay off: " + why + "; no ingress, no deliveries, no reconciler"
	}
	on := fmt.Sprintf("relay on: ingress accepts Prefect's notifications, deliveries go to %s", cfg.DjangoWebhookURL)
	if cfg.RelayEvents() {
		on += "; workers read Prefect's event stream (RELAY_EVENTS=on; one subscriber at a time)"
	} else {
		on += "; event stream off (RELAY_EVENTS=off)"
	}
	switch {
	case cfg.RelayReconcileExplicit && cfg.RelayReconcileInterval <= 0:
		return on + "; reconciler off (RELAY_RECONCILE_INTERVAL=0)"
	case cfg.RelayReconcileExplicit:
		return on + fmt.Sprintf("; reconciler every %s (RELAY_RECONCILE_INTERVAL)", cfg.RelayReconcileInterval)
	default:
		return on + fmt.Sprintf("; reconciler every %s once relay-setup has installed Prefect's automation "+
			"(until then Prefect may still call Django directly; set RELAY_RECONCILE_INTERVAL to decide yourself)",
			cfg.RelayReconcileInterval)
	}
}
