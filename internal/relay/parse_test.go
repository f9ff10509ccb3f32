package relay

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const runID = "3b55ee18-7511-4ede-abba-ad866ebf982c"

func TestParse(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 27, 11, 54, 52, 791472000, time.UTC)
	tests := []struct {
		name string
		body string
		want Notification // Received is ignored
		err  string       // substring of the ParseError; "" = success
	}{
		{
			name: "text format, Prefect 2 policy / Prefect 3 migrated automation",
			body: `{"body": "Flow run glossy-bittern with id ` + runID + ` entered state Completed"}`,
			want: Notification{FlowRunID: runID, Name: "glossy-bittern", State: "Completed", StateType: "COMPLETED", Source: "text"},
		},
		{
			name: "text with underscore, dot and space in the name",
			body: `{"body": "Flow run nightly_sync.v2 eu run with id ` + runID + ` entered state Failed."}`,
			want: Notification{FlowRunID: runID, Name: "nightly_sync.v2 eu run", State: "Failed", StateType: "FAILED", Source: "text"},
		},
		{
			name: "text with a state holding underscores is not cut at _",
			body: `{"body": "Flow run x with id ` + runID + ` entered state DBT_TEST_FAILED"}`,
			want: Notification{FlowRunID: runID, Name: "x", State: "DBT_TEST_FAILED", Source: "text"},
		},
		{
			name: "text TimedOut is a FAILED-type state",
			body: `{"body":"Flow run a-b with id ` + strings.ToUpper(runID) + ` entered state TimedOut"}`,
			want: Notification{FlowRunID: runID, Name: "a-b", State: "TimedOut", StateType: "FAILED", Source: "text"},
		},
		{
			name: "bare text body without JSON",
			body: `Flow run glossy-bittern with id ` + runID + ` entered state Running`,
			want: Notification{FlowRunID: runID, Name: "glossy-bittern", State: "Running", StateType: "RUNNING", Source: "text"},
		},
		{
			name: "Prefect 2 default template",
			body: "{\"body\": \"Flow run my-flow/glossy-bittern entered state `Crashed` at 2026-11-27T11:54:52.791472+00:00.\\n\\nFlow ID: x\\nFlow run ID: " + runID + "\\nState message: boom\"}",
			want: Notification{FlowRunID: runID, Name: "glossy-bittern", State: "Crashed", StateType: "CRASHED", Timestamp: ts, Source: "text"},
		},
		{
			name: "dict body: a flow run object",
			body: `{"body": {"id": "` + runID + `", "name": "r_1", "state_type": "COMPLETED", "state_name": "Completed",
				"state": {"id": "01a21cd8-ae7b-748d-a302-16784986a63e", "type": "COMPLETED", "name": "Completed", "timestamp": "2026-11-27T11:54:52.791472Z"}}}`,
			want: Notification{FlowRunID: runID, Name: "r_1", State: "Completed", StateType: "COMPLETED", Timestamp: ts,
				StateID: "01a21cd8-ae7b-748d-a302-16784986a63e", Source: "flow_run"},
		},
		{
			name: "string body holding flow-run JSON (Django's path A)",
			body: `{"body": "{\"id\": \"` + runID + `\", \"name\": \"r\", \"state\": {\"name\": \"Cancelled\", \"type\": \"CANCELLED\", \"timestamp\": \"2026-11-27T11:54:52.791472+00:00\"}}"}`,
			want: Notification{FlowRunID: runID, Name: "r", State: "Cancelled", StateType: "CANCELLED", Timestamp: ts, Source: "flow_run"},
		},
		{
			name: "relay template as Prefect renders it",
			body: `{"flow_run_id": "` + runID + `", "flow_run_name": "probe_run.x \"y", "state_name": "TimedOut", "state_type": "FAILED",
				"state_timestamp": "2026-11-27 11:54:52.791472+00:00", "event_id": "01a21cdb-c225-7193-92e6-a9b211e31eff", "event": "prefect.flow-run.TimedOut"}`,
			want: Notification{FlowRunID: runID, Name: `probe_run.x "y`, State: "TimedOut", StateType: "FAILED", Timestamp: ts,
				StateID: "01a21cdb-c225-7193-92e6-a9b211e31eff", Source: "template"},
		},
		{
			name: "template with the enum rendered as StateType.COMPLETED",
			body: `{"flow_run_id": "` + runID + `", "flow_run_name": "n", "state_name": "Completed", "state_type": "StateType.COMPLETED", "state_timestamp": "2026-11-27T11:54:52.791472Z"}`,
			want: Notification{FlowRunID: runID, Name: "n", State: "Completed", StateType: "COMPLETED", Timestamp: ts, Source: "template"},
		},
		{
			name: "raw Prefect event",
			body: `{"occurred": "2026-11-27T11:54:52.791472Z", "event": "prefect.flow-run.Completed", "id": "01a21cd8-ae7b-748d-a302-16784986a63e",
				"resource": {"prefect.resource.id": "prefect.flow-run.` + runID + `", "prefect.resource.name": "probe_run.x y",
				"prefect.state-name": "Completed", "prefect.state-timestamp": "2026-11-27T11:54:52.791472+00:00", "prefect.state-type": "COMPLETED"}}`,
			want: Notification{FlowRunID: runID, Name: "probe_run.x y", State: "Completed", StateType: "COMPLETED", Timestamp: ts,
				StateID: "01a21cd8-ae7b-748d-a302-16784986a63e", Source: "event"},
		},
		{name: "empty body", body: "", err: "empty body"},
		{name: "whitespace body", body: " \n\t", err: "empty body"},
		{name: "truncated JSON", body: `{"body": "Flow run x with id ` + runID, err: "not valid JSON"},
		{name: "garbage", body: "\x00\xffgarbage", err: "neither a JSON object"},
		{name: "JSON array", body: `[1,2]`, err: "neither a JSON object"},
		{name: "object without anything known", body: `{"hello": "world"}`, err: "unrecognised"},
		{name: "body text that does not match", body: `{"body": "something happened"}`, err: "does not match"},
		{name: "body of the wrong type", body: `{"body": 42}`, err: "string or an object"},
		{name: "template with a bad id", body: `{"flow_run_id": "not-a-uuid", "state_name": "Completed"}`, err: "not a UUID"},
		{name: "template with a bad timestamp", body: `{"flow_run_id": "` + runID + `", "state_name": "Completed", "state_timestamp": "yesterday"}`, err: "not a date-time"},
		{name: "template with a field of the wrong type", body: `{"flow_run_id": 5}`, err: "unexpected field type"},
		{name: "event that is not a flow-run event", body: `{"event": "prefect.deployment.created", "resource": {"prefect.resource.id": "x"}}`, err: "not a flow-run state event"},
		{name: "deep nesting refused", body: `{"body": {"body": {"body": {"body": {"id": "` + runID + `"}}}}}`, err: "nests too deeply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse([]byte(tc.body))
			if tc.err != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || !strings.Contains(pe.Message, tc.err) {
					t.Fatalf("Parse error = %v, want a ParseError containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Parse =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestDjangoBodyMatchesDjangoRegex(t *testing.T) {
	t.Parallel()
	// Django's own regex (webhook_functions.py) must capture the whole id and state.
	django := `Flow run ([a-zA-Z0-9-]+) with id ([a-zA-Z0-9-]+) entered state ([a-zA-Z0-9]+)`
	for _, name := range []string{"glossy-bittern", "nightly_sync.v2 eu", "", "ünïcode run", `a"b'c`} {
		n := Notification{FlowRunID: runID, Name: name, State: "Completed"}
		m := mustMatch(t, django, DjangoBody(n))
		if m[2] != runID || m[3] != "Completed" {
			t.Errorf("name %q: Django reads id %q state %q from %q", name, m[2], m[3], DjangoBody(n))
		}
	}
	if got := SafeName("nightly_sync.v2 eu"); got != "nightly-sync-v2-eu" {
		t.Errorf("SafeName = %q", got)
	}
}

func TestDedupeKeyIgnoresTimestampRendering(t *testing.T) {
	t.Parallel()
	a, err1 := Parse([]byte(`{"flow_run_id": "` + runID + `", "flow_run_name": "n", "state_name": "Completed", "state_timestamp": "2026-11-27 11:54:52.791472+00:00"}`))
	b, err2 := Parse([]byte(`{"occurred": "x", "event": "prefect.flow-run.Completed", "id": "e", "resource": {"prefect.resource.id": "prefect.flow-run.` + runID + `", "prefect.state-timestamp": "2026-11-27T11:54:52.791472Z"}}`))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if DedupeKey(a) != DedupeKey(b) || WebhookID(a) != WebhookID(b) || TaskID(a) != TaskID(b) {
		t.Fatalf("the same state change got two keys: %q vs %q", DedupeKey(a), DedupeKey(b))
	}
	c := a
	c.Timestamp = c.Timestamp.Add(time.Second)
	if WebhookID(a) == WebhookID(c) {
		t.Fatal("a re-entry with a newer timestamp must get a new Webhook-Id")
	}
}
