package relay

import (
	"errors"
	"regexp"
	"testing"
)

func mustMatch(t *testing.T, re, s string) []string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%q does not match %s", s, re)
	}
	return m
}

var djangoRE = regexp.MustCompile(`Flow run ([a-zA-Z0-9-]+) with id ([a-zA-Z0-9-]+) entered state ([a-zA-Z0-9]+)`)

// FuzzParse: any input either parses into a notification whose Django text
// Django can read, or yields a ParseError — never a panic or another error.
// Seed corpus: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"body": "Flow run glossy-bittern with id 3b55ee18-7511-4ede-abba-ad866ebf982c entered state Completed"}`,
		`{"body": {"id": "3b55ee18-7511-4ede-abba-ad866ebf982c", "name": "r", "state": {"name": "Failed", "type": "FAILED", "timestamp": "2026-01-01T00:00:00Z"}}}`,
		`{"flow_run_id": "3b55ee18-7511-4ede-abba-ad866ebf982c", "flow_run_name": "a_b", "state_name": "Running", "state_type": "RUNNING", "state_timestamp": "2026-11-27 11:54:52.791472+00:00", "event_id": "x"}`,
		`{"event": "prefect.flow-run.Crashed", "id": "e", "resource": {"prefect.resource.id": "prefect.flow-run.3b55ee18-7511-4ede-abba-ad866ebf982c"}}`,
		``, `{`, `[]`, `null`, `{"body": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := Parse(body)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("non-ParseError %T: %v", err, err)
			}
			return
		}
		if n.FlowRunID == "" {
			t.Fatalf("parsed without a flow run id: %+v", n)
		}
		if n.State == "" {
			return // the worker looks the state up; nothing to send yet
		}
		m := djangoRE.FindStringSubmatch(DjangoBody(n))
		if m == nil || m[2] != n.FlowRunID {
			t.Fatalf("Django cannot read %q", DjangoBody(n))
		}
	})
}
