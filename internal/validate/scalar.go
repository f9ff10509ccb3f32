package validate

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Error types and messages shared by several coercions.
const (
	msgInt         = "Input should be a valid integer"
	msgIntParsing  = "Input should be a valid integer, unable to parse string as an integer"
	msgIntFraction = "Input should be a valid integer, got a number with a fractional part"
	msgDatetime    = "Input should be a valid datetime"
)

// intString is what pydantic-core's str_as_int accepts once the string is
// trimmed: a sign, digits with single underscores between them, and an
// optional fraction of zeros (at least one: "5." is not an int).
var intString = regexp.MustCompile(`^[+-]?[0-9]+(_[0-9]+)*(\.0+)?$`)

// LaxInt is pydantic's lax int: JSON ints, integral floats, bools, and
// strings such as " 5 ", "+5", "1_000" or "5.0". On failure it returns the
// error's type and message (typ is "" on success).
func LaxInt(v any) (n int64, typ, msg string) {
	switch t := v.(type) {
	case bool:
		if t {
			return 1, "", ""
		}
		return 0, "", ""
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, "", ""
		}
		f, err := t.Float64()
		if err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), "", ""
		}
		return 0, "int_from_float", msgIntFraction
	case string:
		return intFromString(t)
	}
	return 0, "int_type", msgInt
}

func intFromString(s string) (int64, string, string) {
	s = strings.TrimSpace(s)
	if !intString.MatchString(s) {
		return 0, "int_parsing", msgIntParsing
	}
	s = strings.ReplaceAll(s, "_", "")
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, "int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size"
	}
	return i, "", ""
}

// LaxBool is pydantic's lax bool: true/false, 0/1, and the strings
// "0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"
// in any case.
func LaxBool(v any) (b bool, typ, msg string) {
	switch t := v.(type) {
	case bool:
		return t, "", ""
	case json.Number:
		f, err := t.Float64()
		if err == nil && (f == 0 || f == 1) {
			return f == 1, "", ""
		}
	case string:
		switch strings.ToLower(t) {
		case "0", "off", "f", "false", "n", "no":
			return false, "", ""
		case "1", "on", "t", "true", "y", "yes":
			return true, "", ""
		}
	default:
		return false, "bool_type", "Input should be a valid boolean"
	}
	return false, "bool_parsing", "Input should be a valid boolean, unable to interpret input"
}

// LaxDatetime is pydantic's lax datetime: an ISO-8601 string (a naive one
// is taken as UTC), a date (midnight UTC), or Unix seconds, as a JSON
// number or a numeric string; above 2e10 the number is milliseconds.
func LaxDatetime(v any) (t time.Time, typ, msg string) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	default:
		return time.Time{}, "datetime_type", msgDatetime
	}
	if t, ok := unixTime(s); ok {
		return t, "", ""
	}
	if t, ok := ISO(s); ok {
		return t, "", ""
	}
	return time.Time{}, "datetime_from_date_parsing", "Input should be a valid datetime or date, " + dateError(s)
}

func unixTime(s string) (time.Time, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	if math.Abs(f) > 2e10 {
		f /= 1000
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1000).UTC(), true
}

// dateError is the reason speedate (pydantic's date parser) gives for a
// string that is neither a datetime nor a date; pydantic appends it to the
// message.
func dateError(s string) string {
	digits := func(p string) bool {
		for _, r := range p {
			if r < '0' || r > '9' {
				return false
			}
		}
		return true
	}
	switch {
	case len(s) < 10:
		return "input is too short"
	case !digits(s[0:4]):
		return "invalid character in year"
	case s[4] != '-' || s[7] != '-':
		return "invalid date separator, expected `-`"
	case !digits(s[5:7]):
		return "invalid character in month"
	case !digits(s[8:10]):
		return "invalid character in day"
	case s[5:7] < "01" || s[5:7] > "12":
		return "month value is outside expected range of 1-12"
	case len(s) > 10:
		return "unexpected extra characters at the end of the input"
	}
	return "day value is outside expected range"
}

var isoLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ISO parses an ISO-8601 date-time as Python's datetime.fromisoformat and
// pydantic do: "T", "t", "_" or a space between date and time, an optional
// fraction, an offset, "Z" or none (then UTC), or a bare date (midnight
// UTC). The result is in UTC.
func ISO(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 10 && strings.IndexByte(" t_", s[10]) >= 0 {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	for _, l := range isoLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// uuidPath matches what Prefect's `{id:uuid}` routes accept (Starlette's
// uuid convertor): anything else never reaches a Prefect handler.
var uuidPath = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// UUIDPath reports whether s is a path segment Prefect's uuid routes accept.
func UUIDPath(s string) bool { return uuidPath.MatchString(s) }
