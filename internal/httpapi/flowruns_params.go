package httpapi

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// Query and body parsing for the flow-run read routes, with FastAPI's 422
// entries (loc/msg/type) so a client sees the errors it saw before.

// lastQuery returns a query parameter; like Starlette, the last value wins.
func lastQuery(c *gin.Context, name string) (string, bool) {
	vs, ok := c.Request.URL.Query()[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// spacedOffset is a date-time whose UTC offset lost its "+": in a query
// string an unencoded "+" means a space, so "...T10:00:00+05:30" sent raw
// arrives as "...T10:00:00 05:30".
var spacedOffset = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$`)

// queryDateTime returns a date-time query parameter with a "+" offset that
// arrived as a space put back.
func queryDateTime(c *gin.Context, name string) (string, bool) {
	v, ok := lastQuery(c, name)
	return spacedOffset.ReplaceAllString(strings.TrimSpace(v), "$1+$2"), ok
}

// queryErrs collects FastAPI-style errors for query and path parameters.
type queryErrs []apperr.FieldError

func (q *queryErrs) err() error {
	if len(*q) == 0 {
		return nil
	}
	return apperr.Validation(*q...)
}

// required reads a required str query parameter.
func (q *queryErrs) required(c *gin.Context, name string) string {
	v, ok := lastQuery(c, name)
	if !ok {
		*q = append(*q, apperr.Field("missing", "Field required", "query", name))
	}
	return v
}

// nonNegInt reads an int query parameter with a default. A negative value is
// a 422 (the Python proxy raised ValueError, a bare 500).
func (q *queryErrs) nonNegInt(c *gin.Context, name string, def int) int {
	v, ok := lastQuery(c, name)
	if !ok {
		return def
	}
	n, fe := parseIntParam(v, "query", name)
	if fe != nil {
		*q = append(*q, *fe)
		return def
	}
	if n < 0 {
		*q = append(*q, apperr.Field("greater_than_equal", "Input should be greater than or equal to 0", "query", name))
		return def
	}
	return n
}

// parseIntParam parses an int query/path parameter as pydantic does.
func parseIntParam(v, where, name string) (int, *apperr.FieldError) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		fe := apperr.Field("int_parsing", "Input should be a valid integer, unable to parse string as an integer", where, name)
		return 0, &fe
	}
	return n, nil
}

// parseISODateTime accepts ISO-8601 date-times as Python's
// datetime.fromisoformat and pydantic do: "T" or space separator, optional
// fraction, an offset or "Z" or none (then UTC is assumed), or a bare date.
func parseISODateTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	for _, layout := range []string{
		"2006-01-02T15:04:05.999999999Z07:00",
		"2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02T15:04:05.999999999Z07",
		"2006-01-02T15:04:05.999999999",
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04",
		"2006-01-02",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// bodyNullableStr reads a `str | None = None` body field ("" when absent or null).
func bodyNullableStr(b *bodyFields, name string) string {
	raw, ok := b.fields[name]
	if !ok || isNull(raw) {
		return ""
	}
	return b.str(name, false)
}

// bodyInt reads an `int` body field with a default, in pydantic's lax mode:
// integral numbers, numeric strings and booleans are accepted.
func bodyInt(b *bodyFields, name string, def int) int {
	raw, ok := b.fields[name]
	if !ok {
		return def
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		v = nil
	}
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) {
			b.fail(apperr.Field("int_from_float", "Input should be a valid integer, got a number with a fractional part", "body", name))
			return def
		}
		return int(x)
	case bool:
		if x {
			return 1
		}
		return 0
	case string:
		n, fe := parseIntParam(x, "body", name)
		if fe != nil {
			b.fail(*fe)
			return def
		}
		return n
	}
	b.fail(apperr.Field("int_type", "Input should be a valid integer", "body", name))
	return def
}

// bodyNullableDateTime reads a `datetime | None = None` body field: an
// ISO-8601 string or a Unix timestamp in seconds.
func bodyNullableDateTime(b *bodyFields, name string) *time.Time {
	raw, ok := b.fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	switch x := v.(type) {
	case string:
		if t, ok := parseISODateTime(x); ok {
			return &t
		}
	case float64:
		sec, frac := math.Modf(x)
		t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
		return &t
	}
	b.fail(apperr.Field("datetime_parsing", "Input should be a valid datetime", "body", name))
	return nil
}
