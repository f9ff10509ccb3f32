package proxy

// Request validation with the Python proxy's observable behaviour: FastAPI
// parses the body, pydantic v2 (lax mode) validates it, and every failure
// becomes one entry of a 422 list detail. The rules below were checked
// against fastapi 0.136.3 / pydantic 2.13.4 (the Python proxy's lock file):
// a JSON number is never a str, "True"/"yes"/1 are bools, "5"/5.0/true are
// ints, and an absent or null body is "missing".

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// parseBody decodes a request body the way FastAPI does: an empty body or a
// JSON null is "absent" (ok=false, no error); invalid JSON is a 422
// json_invalid. Numbers stay json.Number so large ints survive re-encoding.
func parseBody(body []byte) (v any, ok bool, err *apperr.Error) {
	if len(body) == 0 {
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if e := dec.Decode(&v); e != nil {
		return nil, false, jsonInvalid(e, len(body))
	}
	// Python's json.loads rejects trailing data ("Extra data") at the
	// position of the first character after the value.
	end := int(dec.InputOffset())
	if _, e := dec.Token(); !errors.Is(e, io.EOF) {
		pos := end
		for pos < len(body) && strings.ContainsRune(" \t\n\r", rune(body[pos])) {
			pos++
		}
		return nil, false, apperr.Validation(apperr.Field("json_invalid", "JSON decode error", "body", pos))
	}
	if v == nil {
		return nil, false, nil
	}
	return v, true, nil
}

// jsonInvalid is FastAPI's answer to a body json.loads rejects; loc ends
// with the character position Python reports (the end of the body when it
// stops early, as in "{" or whitespace only).
func jsonInvalid(e error, size int) *apperr.Error {
	pos := size
	var se *json.SyntaxError
	if errors.As(e, &se) && se.Offset > 0 {
		pos = int(se.Offset) - 1
	}
	return apperr.Validation(apperr.Field("json_invalid", "JSON decode error", "body", pos))
}

// modelBody decodes a body bound to a required pydantic model parameter.
func modelBody(body []byte) (*checker, *apperr.Error) {
	v, ok, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apperr.Validation(apperr.Field("missing", "Field required", "body"))
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return nil, apperr.Validation(apperr.Field("model_attributes_type",
			"Input should be a valid dictionary or object to extract fields from", "body"))
	}
	return &checker{obj: obj, loc: []any{"body"}}, nil
}

// dictBody decodes a body bound to a plain `dict` parameter. With optional
// (`payload: dict = None`) an absent body is nil; otherwise it is "missing".
func dictBody(body []byte, optional bool) (map[string]any, *apperr.Error) {
	v, ok, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	if !ok {
		if optional {
			return nil, nil
		}
		return nil, apperr.Validation(apperr.Field("missing", "Field required", "body"))
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return nil, apperr.Validation(apperr.Field("dict_type", "Input should be a valid dictionary", "body"))
	}
	return obj, nil
}

// checker validates the fields of one JSON object, collecting every error
// in field order as pydantic does.
type checker struct {
	obj  map[string]any
	loc  []any
	errs []apperr.FieldError
}

func (c *checker) fail(name, typ, msg string) {
	loc := append(append([]any{}, c.loc...), name)
	c.errs = append(c.errs, apperr.FieldError{Loc: loc, Msg: msg, Type: typ})
}

// err is the 422 for every failure so far, or nil.
func (c *checker) err() *apperr.Error {
	if len(c.errs) == 0 {
		return nil
	}
	return apperr.Validation(c.errs...)
}

// has reports whether the key is present (even with a null value).
func (c *checker) has(name string) bool { _, ok := c.obj[name]; return ok }

// lookup returns the value, reporting "missing" for a required absent key.
func (c *checker) lookup(name string, required bool) (any, bool) {
	v, ok := c.obj[name]
	if !ok {
		if required {
			c.fail(name, "missing", "Field required")
		}
		return nil, false
	}
	return v, true
}

// str validates `name: str` (required) or `name: str = ""`-style fields.
func (c *checker) str(name string, required bool) string {
	v, ok := c.lookup(name, required)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		c.fail(name, "string_type", "Input should be a valid string")
	}
	return s
}

// optStr validates `name: str | None = None`; nil when absent or null.
func (c *checker) optStr(name string) *string {
	v, ok := c.obj[name]
	if !ok || v == nil {
		return nil
	}
	s, isStr := v.(string)
	if !isStr {
		c.fail(name, "string_type", "Input should be a valid string")
		return nil
	}
	return &s
}

// boolean validates `name: bool = def`.
func (c *checker) boolean(name string, def bool) bool {
	v, ok := c.obj[name]
	if !ok {
		return def
	}
	b, good := laxBool(v)
	if !good {
		c.failBool(name, v)
	}
	return b
}

// optBool validates `name: bool | None = None`.
func (c *checker) optBool(name string) *bool {
	v, ok := c.obj[name]
	if !ok || v == nil {
		return nil
	}
	b, good := laxBool(v)
	if !good {
		c.failBool(name, v)
		return nil
	}
	return &b
}

func (c *checker) failBool(name string, v any) {
	switch v.(type) {
	case string, json.Number:
		c.fail(name, "bool_parsing", "Input should be a valid boolean, unable to interpret input")
	default:
		c.fail(name, "bool_type", "Input should be a valid boolean")
	}
}

func laxBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case json.Number:
		f, err := t.Float64()
		if err == nil && (f == 0 || f == 1) {
			return f == 1, true
		}
	case string:
		switch strings.ToLower(t) {
		case "0", "off", "f", "false", "n", "no":
			return false, true
		case "1", "on", "t", "true", "y", "yes":
			return true, true
		}
	}
	return false, false
}

var intString = regexp.MustCompile(`^[+-]?[0-9]+(_[0-9]+)*(\.0*)?$`)

// integer validates a required `name: int`.
func (c *checker) integer(name string) int64 {
	v, ok := c.lookup(name, true)
	if !ok {
		return 0
	}
	i, typ, msg := laxInt(v)
	if typ != "" {
		c.fail(name, typ, msg)
	}
	return i
}

// laxInt is pydantic's lax int: JSON ints, integral floats, bools, and
// strings like " 5 ", "1_000" or "5.0". On failure it returns the error's
// type and message.
func laxInt(v any) (int64, string, string) {
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
		return 0, "int_from_float", "Input should be a valid integer, got a number with a fractional part"
	case string:
		s := strings.TrimSpace(t)
		if intString.MatchString(s) {
			s = strings.ReplaceAll(s, "_", "")
			if i := strings.IndexByte(s, '.'); i >= 0 {
				s = s[:i]
			}
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, "", ""
			}
		}
		return 0, "int_parsing", "Input should be a valid integer, unable to parse string as an integer"
	}
	return 0, "int_type", "Input should be a valid integer"
}

// dict validates `name: dict` (required) or `name: dict = {}`. A null is an
// error either way (the field is not Optional).
func (c *checker) dict(name string, required bool) (map[string]any, bool) {
	v, ok := c.lookup(name, required)
	if !ok {
		return nil, false
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		c.fail(name, "dict_type", "Input should be a valid dictionary")
		return nil, false
	}
	return m, true
}

// model validates a nested required model field and returns its checker.
func (c *checker) model(name string) *checker {
	v, ok := c.lookup(name, true)
	if !ok {
		return nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		c.fail(name, "model_attributes_type", "Input should be a valid dictionary or object to extract fields from")
		return nil
	}
	return &checker{obj: m, loc: append(append([]any{}, c.loc...), name)}
}

// merge adds a nested checker's errors to c.
func (c *checker) merge(n *checker) {
	if n != nil {
		c.errs = append(c.errs, n.errs...)
	}
}

// literal validates a required `name: Literal[want]`.
func (c *checker) literal(name, want string) string {
	v, ok := c.lookup(name, true)
	if !ok {
		return ""
	}
	if s, _ := v.(string); s != want {
		c.fail(name, "literal_error", "Input should be '"+want+"'")
		return ""
	}
	return want
}

// optDatetime validates `name: datetime | None = None` with pydantic's
// inputs: ISO 8601 (date-only means midnight; no zone means UTC for us),
// and Unix seconds (or milliseconds above 2e10) as number or string.
func (c *checker) optDatetime(name string) *time.Time {
	v, ok := c.obj[name]
	if !ok || v == nil {
		return nil
	}
	var t time.Time
	var good bool
	switch x := v.(type) {
	case json.Number:
		t, good = unixTime(string(x))
	case string:
		if t, good = unixTime(strings.TrimSpace(x)); !good {
			t, good = isoTime(x)
		}
	default:
		c.fail(name, "datetime_type", "Input should be a valid datetime")
		return nil
	}
	if !good {
		c.fail(name, "datetime_from_date_parsing", "Input should be a valid datetime or date, invalid datetime format")
		return nil
	}
	return &t
}

func unixTime(s string) (time.Time, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	if math.Abs(f) > 2e10 {
		f /= 1000
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1000).UTC(), true
}

var isoLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

func isoTime(s string) (time.Time, bool) {
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
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

func isUUIDPath(s string) bool { return uuidPath.MatchString(s) }
