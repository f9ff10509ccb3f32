package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// event is the part of a Prefect event the subscriber reads; raw is the
// whole event, handed to the relay's ingress as it came.
type event struct {
	ID       string            `json:"id"`
	Event    string            `json:"event"`
	Occurred time.Time         `json:"occurred"`
	Resource map[string]string `json:"resource"`
	raw      json.RawMessage
}

// stateChange reports the run and state type of a flow-run state event;
// ok=false for any other event under the prefix (a runner's
// prefect.flow-run.pull-step.executed, a heartbeat) or an unusable one.
func (e event) stateChange() (runID, stateType string, ok bool) {
	runID, isRun := strings.CutPrefix(e.Resource["prefect.resource.id"], "prefect.flow-run.")
	stateType = e.Resource["prefect.state-type"]
	if !isRun || runID == "" || stateType == "" || e.Occurred.IsZero() || e.ID == "" ||
		!strings.HasPrefix(e.Event, "prefect.flow-run.") {
		return "", "", false
	}
	return strings.ToLower(runID), stateType, true
}

func decodeEvent(raw json.RawMessage) (event, error) {
	var ev event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return ev, err
	}
	ev.raw = raw
	return ev, nil
}

// stateFilter is the EventFilter of the stream and the backfill: flow-run
// events from since on.
func stateFilter(since, until time.Time) map[string]any {
	return map[string]any{
		"event":    map[string]any{"prefix": []string{"prefect.flow-run."}},
		"resource": map[string]any{"id_prefix": []string{"prefect.flow-run."}},
		"occurred": map[string]any{"since": since.UTC().Format(time.RFC3339Nano), "until": until.UTC().Format(time.RFC3339Nano)},
		"order":    "ASC",
	}
}

// stream is one websocket connection to /events/out.
type stream struct{ c *websocket.Conn }

// handshakeTimeout bounds the connect, the auth exchange and the filter.
const handshakeTimeout = 15 * time.Second

// dial connects, authenticates and subscribes, as Prefect's own
// PrefectEventSubscriber does: subprotocol "prefect", {"type": "auth",
// "token": ...} answered by {"type": "auth_success"}, then {"type":
// "filter", ...}. The server subscribes the connection to its live events
// when it reads the filter; "backfill": false, since the subscriber does its
// own (paged, from its cursor) through /events/filter.
func (s *Subscriber) dial(ctx context.Context) (*stream, error) {
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	c, _, err := websocket.Dial(hctx, s.cfg.StreamURL, &websocket.DialOptions{
		Subprotocols: []string{"prefect"},
		HTTPHeader:   s.cfg.Header.Clone(),
	})
	if err != nil {
		return nil, fmt.Errorf("events: connect %s: %w", s.cfg.StreamURL, err)
	}
	c.SetReadLimit(8 << 20)
	st := &stream{c: c}
	var token any
	if s.cfg.Token != "" {
		token = s.cfg.Token
	}
	if err := st.write(hctx, map[string]any{"type": "auth", "token": token}); err != nil {
		st.close()
		return nil, err
	}
	var answer struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	if err := st.readJSON(hctx, &answer); err != nil {
		st.close()
		return nil, fmt.Errorf("events: auth: %w", err)
	}
	if answer.Type != "auth_success" {
		st.close()
		return nil, fmt.Errorf("events: Prefect refused the stream's auth (%s): check PREFECT_API_KEY / PREFECT_API_AUTH_STRING", answer.Reason)
	}
	now := time.Now()
	if err := st.write(hctx, map[string]any{"type": "filter", "backfill": false,
		"filter": stateFilter(now.Add(-time.Minute), now.AddDate(100, 0, 0))}); err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

func (st *stream) write(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := st.c.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("events: send: %w", closeReason(err))
	}
	return nil
}

func (st *stream) readJSON(ctx context.Context, v any) error {
	_, b, err := st.c.Read(ctx)
	if err != nil {
		return closeReason(err)
	}
	return json.Unmarshal(b, v)
}

// read passes every event to out until the connection fails or ctx ends.
// A full out (a backfill holding live events for too long) ends the
// connection: the next one backfills from the cursor instead.
func (st *stream) read(ctx context.Context, out chan<- event, pingEvery time.Duration) error {
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go st.ping(pctx, pingEvery)
	for {
		_, b, err := st.c.Read(ctx)
		if err != nil {
			return closeReason(err)
		}
		var msg struct {
			Type  string          `json:"type"`
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(b, &msg); err != nil || len(msg.Event) == 0 {
			continue // not an event message: nothing to do with it
		}
		ev, err := decodeEvent(msg.Event)
		if err != nil {
			continue
		}
		select {
		case out <- ev:
		default:
			return fmt.Errorf("more than %d live events waiting behind the backfill", cap(out))
		}
	}
}

// ping checks the connection every interval; a Prefect that stopped
// answering (no TCP close) is noticed within two intervals.
func (st *stream) ping(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		err := st.c.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			st.c.CloseNow() // the reader sees the failure and the session reconnects
			return
		}
	}
}

func (st *stream) close() { _ = st.c.Close(websocket.StatusNormalClosure, "") }

// closeReason names a close frame's code and reason (Prefect says why it
// refused a filter or a token there).
func closeReason(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("closed by Prefect: %d %s", ce.Code, ce.Reason)
	}
	return err
}
