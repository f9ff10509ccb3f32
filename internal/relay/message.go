package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// DedupeKey identifies one state change of one run: (run id, state name,
// state timestamp in microseconds). Why not Prefect's event id or state id
// (they are equal in Prefect 3)? The text format — what Dalgo's Prefect sends
// today — carries neither, while every source can produce this triple: the
// JSON formats carry the timestamp, the reconciler reads it from the run, and
// a text notification gets it from the run's state history. The timestamp is
// normalised to microseconds (Prefect's precision) so "Z" and "+00:00"
// renderings of the same instant agree. A genuine re-entry (Running again
// after a retry) has a newer timestamp and so a new key.
func DedupeKey(n Notification) string {
	return n.FlowRunID + "|" + n.State + "|" + strconv.FormatInt(n.Timestamp.UnixMicro(), 10)
}

// WebhookID is the stable Webhook-Id header of a delivery: the same state
// change always gets the same id, across retries, replays and sources.
func WebhookID(n Notification) string {
	sum := sha256.Sum256([]byte(DedupeKey(n)))
	u, _ := uuid.FromBytes(sum[:16])
	return "rly_" + strings.ReplaceAll(u.String(), "-", "")
}

// TaskID is the asynq task id of a complete notification: the webhook and the
// reconciler enqueue the same id, so a duplicate still waiting in the queue
// is refused by asynq before any worker sees it.
func TaskID(n Notification) string {
	sum := sha256.Sum256([]byte(DedupeKey(n)))
	return "relay-" + hex.EncodeToString(sum[:12])
}

// DjangoBody is the text Django's regex reads:
// "Flow run ([a-zA-Z0-9-]+) with id ([a-zA-Z0-9-]+) entered state ([a-zA-Z0-9]+)".
func DjangoBody(n Notification) string {
	return "Flow run " + SafeName(n.Name) + " with id " + n.FlowRunID + " entered state " + safeState(n.State)
}

// SafeName reduces a run name to Django's [A-Za-z0-9-]: every other
// character becomes '-', so "nightly_sync.v2 eu" reads "nightly-sync-v2-eu"
// instead of making Django's regex miss the whole notification.
func SafeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r < 128 && (r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "unnamed"
	}
	return b.String()
}

// safeState keeps the state in Django's [a-zA-Z0-9]+ so its group captures
// the whole name; built-in Prefect state names are already alphanumeric.
func safeState(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 128 && (r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "Unknown"
	}
	return b.String()
}
