// Package relay carries Prefect's flow-run notifications to Django: it parses
// what Prefect sends (four formats), queues each notification durably, drops
// duplicates and stale states, delivers to Django with retries, reconciles
// against Prefect for webhooks that never came, and installs Prefect's side
// of the wiring (the Webhook block and the automation).
package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
	"github.com/google/uuid"
)

// Notification is one flow-run state change. It is the payload of a delivery
// task, so its JSON shape is stored in Redis: add fields, never rename them.
type Notification struct {
	FlowRunID string    `json:"flow_run_id"`
	Name      string    `json:"name,omitempty"`       // the run's name as Prefect has it
	State     string    `json:"state,omitempty"`      // state NAME (Completed, TimedOut, ...)
	StateType string    `json:"state_type,omitempty"` // COMPLETED, FAILED, ...
	Timestamp time.Time `json:"ts,omitzero"`          // when the run entered the state
	StateID   string    `json:"state_id,omitempty"`   // = Prefect's event id
	Source    string    `json:"source"`               // text, flow_run, template, event, reconciler
	Received  time.Time `json:"received"`
}

// Complete reports whether the notification carries everything delivery and
// dedupe need; otherwise the worker looks the run up in Prefect first.
func (n Notification) Complete() bool {
	return n.FlowRunID != "" && n.Name != "" && n.State != "" && !n.Timestamp.IsZero()
}

// Terminal reports whether the state ends the run (COMPLETED, FAILED,
// CRASHED, CANCELLED types; TimedOut is a FAILED-type name).
func (n Notification) Terminal() bool {
	t := n.StateType
	if t == "" {
		t = typeOfName[n.State]
	}
	switch t {
	case "COMPLETED", "FAILED", "CRASHED", "CANCELLED":
		return true
	}
	return false
}

// typeOfName maps Prefect's built-in state names to their types, for bodies
// (the text format) that carry only the name.
var typeOfName = map[string]string{
	"Scheduled": "SCHEDULED", "Late": "SCHEDULED", "AwaitingRetry": "SCHEDULED",
	"AwaitingConcurrencySlot": "SCHEDULED", "Pending": "PENDING", "Running": "RUNNING",
	"Retrying": "RUNNING", "Completed": "COMPLETED", "Cached": "COMPLETED", "RolledBack": "COMPLETED",
	"Failed": "FAILED", "TimedOut": "FAILED", "Crashed": "CRASHED", "Cancelled": "CANCELLED",
	"Cancelling": "CANCELLING", "Paused": "PAUSED", "Suspended": "PAUSED",
}

// ParseError is an inbound body the relay cannot use; Message is safe to
// return to the sender.
type ParseError struct{ Message string }

func (e *ParseError) Error() string { return e.Message }

func parseErr(format string, args ...any) error {
	return &ParseError{Message: fmt.Sprintf(format, args...)}
}

const uuidRE = `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`

var (
	// The Prefect 2 policy text and Prefect 3's migrated automation. Unlike
	// Django's regex, the name may hold any character (the id anchors it) and
	// the state may hold '_' (DBT_TEST_FAILED is not cut to DBT).
	textRE = regexp.MustCompile(`(?s)Flow run (.*?) with id (` + uuidRE + `) entered state ` + "`?" + `([A-Za-z0-9_\-]+)`)
	// Prefect 2's default policy template, when no template was set:
	// "Flow run <flow>/<run> entered state `<State>` at <ts>. ... Flow run ID: <id>".
	defaultTextRE = regexp.MustCompile(`(?s)Flow run (.*?) entered state ` + "`?" + `([A-Za-z0-9_\-]+)` + "`?" + `(?: at (\S+(?: \S+)?)\.)?`)
	defaultIDRE   = regexp.MustCompile(`Flow run ID: (` + uuidRE + `)`)
)

// Parse reads an inbound notification in any of the four formats the relay
// accepts (docs/ARCHITECTURE.md, Relay): 1. Prefect 2's policy text in
// {"body": "..."}, 2. a flow run's JSON in {"body": {...}}, 3. the template
// relay-setup installs (PayloadTemplate), 4. a raw Prefect event. It never
// needs a Content-Type.
func Parse(body []byte) (Notification, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return Notification{}, parseErr("empty body")
	}
	if body[0] != '{' {
		// Not JSON: a webhook configured to send the bare text still works.
		if n, ok := parseText(string(body)); ok {
			return n, nil
		}
		return Notification{}, parseErr("body is neither a JSON object nor a flow-run notification text")
	}
	if _, over := validate.DepthExceeded(body, validate.MaxDepth); over {
		return Notification{}, parseErr("body nests deeper than %d levels", validate.MaxDepth)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return Notification{}, parseErr("body is not valid JSON: %s", jsonErrText(err))
	}
	return parseObject(obj, 0)
}

func parseObject(obj map[string]json.RawMessage, depth int) (Notification, error) {
	if depth > 2 {
		return Notification{}, parseErr("body nests too deeply")
	}
	if raw, ok := obj["body"]; ok {
		return parseBody(bytes.TrimSpace(raw), depth)
	}
	if _, ok := obj["event"]; ok {
		if _, ok := obj["resource"]; ok {
			return parseEvent(obj)
		}
	}
	if _, ok := obj["flow_run_id"]; ok {
		return parseTemplate(obj)
	}
	if _, ok := obj["id"]; ok {
		return parseFlowRun(obj)
	}
	return Notification{}, parseErr("unrecognised notification: expected a \"body\", a Prefect event, a flow run, or the relay template")
}

// parseBody reads the "body" member: Prefect 2's text, a flow run as JSON
// text (Django's "path A"), or a nested object.
func parseBody(raw json.RawMessage, depth int) (Notification, error) {
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Notification{}, parseErr("body.body is not a JSON string")
		}
		if n, ok := parseText(s); ok {
			return n, nil
		}
		var inner map[string]json.RawMessage
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") && json.Unmarshal([]byte(t), &inner) == nil {
			return parseObject(inner, depth+1)
		}
		return Notification{}, parseErr("body.body does not match %q", "Flow run <name> with id <uuid> entered state <State>")
	case len(raw) > 0 && raw[0] == '{':
		var inner map[string]json.RawMessage
		if err := json.Unmarshal(raw, &inner); err != nil {
			return Notification{}, parseErr("body.body is not a valid JSON object")
		}
		return parseObject(inner, depth+1)
	}
	return Notification{}, parseErr("body.body must be a string or an object")
}

func parseText(s string) (Notification, bool) {
	if m := textRE.FindStringSubmatch(s); m != nil {
		return Notification{
			FlowRunID: strings.ToLower(m[2]),
			Name:      strings.TrimSpace(m[1]),
			State:     m[3],
			StateType: typeOfName[m[3]],
			Source:    "text",
		}, true
	}
	m := defaultTextRE.FindStringSubmatch(s)
	id := defaultIDRE.FindStringSubmatch(s)
	if m == nil || id == nil {
		return Notification{}, false
	}
	name := strings.TrimSpace(m[1])
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	n := Notification{FlowRunID: strings.ToLower(id[1]), Name: name, State: m[2], StateType: typeOfName[m[2]], Source: "text"}
	if m[3] != "" {
		n.Timestamp, _ = parseTime(m[3])
	}
	return n, true
}

// parseTemplate reads the JSON the setup command's automation sends.
func parseTemplate(obj map[string]json.RawMessage) (Notification, error) {
	var t struct {
		FlowRunID      string `json:"flow_run_id"`
		FlowRunName    string `json:"flow_run_name"`
		Name           string `json:"name"`
		StateName      string `json:"state_name"`
		StateType      string `json:"state_type"`
		StateTimestamp string `json:"state_timestamp"`
		EventID        string `json:"event_id"`
		StateID        string `json:"state_id"`
	}
	if err := decodeObject(obj, &t); err != nil {
		return Notification{}, err
	}
	n := Notification{
		Name:      firstNonEmpty(t.FlowRunName, t.Name),
		State:     strings.TrimSpace(t.StateName),
		StateType: normType(t.StateType),
		StateID:   firstNonEmpty(t.StateID, t.EventID),
		Source:    "template",
	}
	return finish(n, t.FlowRunID, t.StateTimestamp)
}

// parseFlowRun reads Prefect's flow-run JSON (GET /flow_runs/{id} shape).
func parseFlowRun(obj map[string]json.RawMessage) (Notification, error) {
	var fr flowRunJSON
	if err := decodeObject(obj, &fr); err != nil {
		return Notification{}, err
	}
	n, ts := fr.notification()
	n.Source = "flow_run"
	return finish(n, fr.ID, ts)
}

// flowRunJSON is the part of Prefect's flow run the relay reads.
type flowRunJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	StateName string `json:"state_name"`
	StateType string `json:"state_type"`
	State     *struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Type      string `json:"type"`
		Timestamp string `json:"timestamp"`
	} `json:"state"`
}

func (fr flowRunJSON) notification() (Notification, string) {
	n := Notification{FlowRunID: strings.ToLower(fr.ID), Name: fr.Name, State: fr.StateName, StateType: normType(fr.StateType)}
	ts := ""
	if s := fr.State; s != nil {
		n.State = firstNonEmpty(s.Name, n.State)
		n.StateType = firstNonEmpty(normType(s.Type), n.StateType)
		n.StateID = s.ID
		ts = s.Timestamp
	}
	return n, ts
}

// parseEvent reads a raw Prefect event (prefect.flow-run.<State>).
func parseEvent(obj map[string]json.RawMessage) (Notification, error) {
	var ev struct {
		ID       string            `json:"id"`
		Event    string            `json:"event"`
		Occurred string            `json:"occurred"`
		Resource map[string]string `json:"resource"`
	}
	if err := decodeObject(obj, &ev); err != nil {
		return Notification{}, err
	}
	state, ok := strings.CutPrefix(ev.Event, "prefect.flow-run.")
	if !ok || state == "" {
		return Notification{}, parseErr("event %q is not a flow-run state event", truncate(ev.Event, 80))
	}
	id, ok := strings.CutPrefix(ev.Resource["prefect.resource.id"], "prefect.flow-run.")
	if !ok {
		return Notification{}, parseErr("event resource is not a flow run")
	}
	n := Notification{
		Name:      ev.Resource["prefect.resource.name"],
		State:     firstNonEmpty(ev.Resource["prefect.state-name"], state),
		StateType: normType(ev.Resource["prefect.state-type"]),
		StateID:   ev.ID,
		Source:    "event",
	}
	return finish(n, id, firstNonEmpty(ev.Resource["prefect.state-timestamp"], ev.Occurred))
}

// finish validates the id and the timestamp shared by the JSON formats.
func finish(n Notification, id, ts string) (Notification, error) {
	u, err := uuid.Parse(strings.TrimSpace(id))
	if err != nil {
		return Notification{}, parseErr("flow run id %q is not a UUID", truncate(id, 80))
	}
	n.FlowRunID = u.String()
	if ts = strings.TrimSpace(ts); ts != "" {
		t, err := parseTime(ts)
		if err != nil {
			return Notification{}, parseErr("state timestamp %q is not a date-time", truncate(ts, 80))
		}
		n.Timestamp = t
	}
	if n.StateType == "" {
		n.StateType = typeOfName[n.State]
	}
	return n, nil
}

// parseTime accepts RFC 3339 and Python's str(datetime) ("2026-01-02
// 03:04:05.123456+00:00", what Jinja renders); a zone-less time is UTC.
func parseTime(s string) (time.Time, error) {
	if t, ok := validate.ISO(s); ok {
		return t, nil
	}
	return time.Time{}, errors.New("not a date-time")
}

// normType turns "StateType.COMPLETED" (Jinja's rendering of the enum) or
// "completed" into "COMPLETED".
func normType(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	return strings.ToUpper(s)
}

// decodeObject re-decodes the already-split object into a struct; a field of
// the wrong JSON type is a parse error, not a panic or a silent zero.
func decodeObject(obj map[string]json.RawMessage, v any) error {
	b, _ := json.Marshal(obj)
	if err := json.Unmarshal(b, v); err != nil {
		return parseErr("unexpected field type: %s", jsonErrText(err))
	}
	return nil
}

func jsonErrText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	}
	return truncate(err.Error(), 120)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
