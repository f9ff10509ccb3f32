package validate

import (
	"net/url"
	"regexp"
	"strings"
)

// Query validates query and path parameters as FastAPI does (the same
// coercions as a body field; "query" or "path" starts each loc).
type Query struct {
	vals url.Values
	errs Errors
}

// NewQuery validates the given query string values.
func NewQuery(vals url.Values) *Query { return &Query{vals: vals} }

// Err is the 422 for every failure so far, or nil.
func (q *Query) Err() error { return q.errs.Err() }

// Fail records an error at loc.
func (q *Query) Fail(typ, msg string, loc ...any) { q.errs.Add(typ, msg, loc...) }

// Last returns a query parameter; like Starlette, the last value wins.
func (q *Query) Last(name string) (string, bool) {
	vs := q.vals[name]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// Required reads a required str query parameter.
func (q *Query) Required(name string) string {
	v, ok := q.Last(name)
	if !ok {
		q.Fail("missing", "Field required", "query", name)
	}
	return v
}

// NonNegInt reads an int query parameter with a default. A negative value
// is a 422 (the Python proxy raised ValueError, a bare 500).
func (q *Query) NonNegInt(name string, def int) int {
	v, ok := q.Last(name)
	if !ok {
		return def
	}
	n, typ, msg := LaxInt(v)
	switch {
	case typ != "":
		q.Fail(typ, msg, "query", name)
		return def
	case n < 0:
		q.Fail("greater_than_equal", "Input should be greater than or equal to 0", "query", name)
		return def
	}
	return int(n)
}

// PathInt reads an int path parameter; ok is false (and the error
// recorded) when it is not one.
func (q *Query) PathInt(name, v string) (int64, bool) {
	n, typ, msg := LaxInt(v)
	if typ != "" {
		q.Fail(typ, msg, "path", name)
		return 0, false
	}
	return n, true
}

// spacedOffset is a date-time whose UTC offset lost its "+": in a query
// string an unencoded "+" means a space, so "...T10:00:00+05:30" sent raw
// arrives as "...T10:00:00 05:30".
var spacedOffset = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$`)

// DateTime returns a date-time query parameter with a "+" offset that
// arrived as a space put back.
func (q *Query) DateTime(name string) (string, bool) {
	v, ok := q.Last(name)
	return spacedOffset.ReplaceAllString(strings.TrimSpace(v), "$1+$2"), ok
}
