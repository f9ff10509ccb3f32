package validate

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestLaxBool(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   any
		want bool
		typ  string
	}{
		{"true", true, true, ""},
		{"one", json.Number("1"), true, ""},
		{"zero float", json.Number("0.0"), false, ""},
		{"two", json.Number("2"), false, "bool_parsing"},
		{"yes in capitals", "YES", true, ""},
		{"off", "off", false, ""},
		{"word", "maybe", false, "bool_parsing"},
		{"null", nil, false, "bool_type"},
		{"list", []any{}, false, "bool_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, typ, _ := LaxBool(tc.in)
			if got != tc.want || typ != tc.typ {
				t.Errorf("LaxBool(%v) = %v %q, want %v %q", tc.in, got, typ, tc.want, tc.typ)
			}
		})
	}
}

func TestISO(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, want string // want "" = rejected
	}{
		{"2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"},
		{"2026-01-02 03:04:05.123456+00:00", "2026-01-02T03:04:05.123456Z"},
		{"2026-01-02t03:04:05z", "2026-01-02T03:04:05Z"},
		{"2026-01-02_03:04:05+0530", "2026-01-01T21:34:05Z"},
		{"2026-01-02T03:04:05+05", "2026-01-01T22:04:05Z"},
		{" 2026-01-02T03:04 ", "2026-01-02T03:04:00Z"},
		{"2026-01-02", "2026-01-02T00:00:00Z"},
		{"1700000000", ""},
		{"2026-02-30", ""},
		{"", ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, ok := ISO(tc.in)
			if (tc.want == "") != !ok || (ok && got.Format(time.RFC3339Nano) != tc.want) {
				t.Errorf("ISO(%q) = %v %v, want %q", tc.in, got, ok, tc.want)
			}
		})
	}
}

func TestBody(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		present    bool
		errLoc     any // position of a json_invalid, or nil
	}{
		{"empty is absent", "", false, nil},
		{"null is absent", "null", false, nil},
		{"object", `{"a":1}`, true, nil},
		{"whitespace only is invalid at its end", "  ", false, 2},
		{"unterminated", `{"a":`, false, 5},
		{"trailing data", `{} x`, false, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, ok, err := Body([]byte(tc.body))
			if ok != tc.present {
				t.Errorf("present = %v, want %v", ok, tc.present)
			}
			switch {
			case tc.errLoc == nil && err != nil:
				t.Errorf("unexpected error %v", err.Fields)
			case tc.errLoc != nil && (err == nil || err.Fields[0].Loc[1] != tc.errLoc):
				t.Errorf("error %v, want json_invalid at %v", err, tc.errLoc)
			}
		})
	}
}

func TestObjectCollectsEveryError(t *testing.T) {
	t.Parallel()
	o, err := Model([]byte(`{"s":1,"l":["a",2],"n":"x","state":{"type":"RUNNING"}}`))
	if err != nil {
		t.Fatal(err)
	}
	o.Str("s", true)
	o.StrList("l", false, false)
	o.Int("n")
	o.Str("missing", true)
	st := o.Model("state")
	st.Literal("type", "CANCELLING")
	o.Merge(st)
	got, _ := json.Marshal(o.errs)
	want := `[{"loc":["body","s"],"msg":"Input should be a valid string","type":"string_type"},` +
		`{"loc":["body","l",1],"msg":"Input should be a valid string","type":"string_type"},` +
		`{"loc":["body","n"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing"},` +
		`{"loc":["body","missing"],"msg":"Field required","type":"missing"},` +
		`{"loc":["body","state","type"],"msg":"Input should be 'CANCELLING'","type":"literal_error"}]`
	if string(got) != want {
		t.Errorf("errors\n got %s\nwant %s", got, want)
	}
}

func TestQuery(t *testing.T) {
	t.Parallel()
	q := NewQuery(url.Values{"limit": {"1", "5.0"}, "offset": {"-1"}, "at": {"2026-01-02T03:04:05 05:30"}})
	if n := q.NonNegInt("limit", 0); n != 5 {
		t.Errorf("limit = %d, want the last value, 5", n)
	}
	if n := q.NonNegInt("offset", 7); n != 7 {
		t.Errorf("negative offset = %d, want the default", n)
	}
	if at, _ := q.DateTime("at"); at != "2026-01-02T03:04:05+05:30" {
		t.Errorf("at = %q, want the + restored", at)
	}
	q.Required("deployment_id")
	got, _ := json.Marshal(q.errs)
	want := `[{"loc":["query","offset"],"msg":"Input should be greater than or equal to 0","type":"greater_than_equal"},` +
		`{"loc":["query","deployment_id"],"msg":"Field required","type":"missing"}]`
	if string(got) != want {
		t.Errorf("errors\n got %s\nwant %s", got, want)
	}
}

func TestDepthExceeded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		max  int
		over bool
		at   int
	}{
		{"flat", `{"a": 1}`, 1, false, 0},
		{"at the limit", `[[[]]]`, 3, false, 0},
		{"one over", `[[[[]]]]`, 3, true, 3},
		{"brackets in strings", `["[[[[", "\"[[[["]`, 1, false, 0},
		{"escaped backslash ends the string", `["\\", [[1]]]`, 2, true, 8},
		{"9000 deep", strings.Repeat("[", 9000), MaxDepth, true, MaxDepth},
	} {
		at, over := DepthExceeded([]byte(tc.body), tc.max)
		if over != tc.over || at != tc.at {
			t.Errorf("%s: got (%d, %v), want (%d, %v)", tc.name, at, over, tc.at, tc.over)
		}
	}
	if e := CheckDepth([]byte(strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100))); e == nil || e.Fields[0].Type != "json_invalid" {
		t.Fatalf("CheckDepth: %v", e)
	}
	if _, _, e := Body([]byte(strings.Repeat("[", 70) + strings.Repeat("]", 70))); e == nil {
		t.Fatal("Body accepted a 70-deep array")
	}
}
