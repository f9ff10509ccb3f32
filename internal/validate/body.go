package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// Body decodes a request body the way FastAPI does: an empty body or a JSON
// null is "absent" (ok=false, no error); anything json.loads rejects is a
// 422 json_invalid whose loc ends with Python's character position. Numbers
// stay json.Number so large ints survive re-encoding.
func Body(body []byte) (v any, ok bool, err *apperr.Error) {
	if len(body) == 0 {
		return nil, false, nil
	}
	if e := CheckDepth(body); e != nil {
		return nil, false, e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if e := dec.Decode(&v); e != nil {
		// Python reports the end of the body when it stops early, as in "{"
		// or whitespace only.
		pos := len(body)
		var se *json.SyntaxError
		if errors.As(e, &se) && se.Offset > 0 {
			pos = int(se.Offset) - 1
		}
		return nil, false, jsonInvalid(pos)
	}
	// json.loads rejects trailing data ("Extra data") at the first
	// character after the value.
	if _, e := dec.Token(); !errors.Is(e, io.EOF) {
		pos := int(dec.InputOffset())
		for pos < len(body) && bytes.IndexByte([]byte(" \t\n\r"), body[pos]) >= 0 {
			pos++
		}
		return nil, false, jsonInvalid(pos)
	}
	if v == nil {
		return nil, false, nil
	}
	return v, true, nil
}

func jsonInvalid(pos int) *apperr.Error {
	return apperr.Validation(apperr.Field("json_invalid", "JSON decode error", "body", pos))
}

// Model decodes a body bound to a required pydantic model parameter.
func Model(body []byte) (*Object, *apperr.Error) {
	v, ok, err := Body(body)
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
	return &Object{obj: obj, loc: []any{"body"}}, nil
}

// Dict decodes a body bound to a plain `dict` parameter. With optional
// (`payload: dict = None`) an absent body is nil; otherwise it is "missing".
func Dict(body []byte, optional bool) (map[string]any, *apperr.Error) {
	v, ok, err := Body(body)
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

// Object validates the fields of one JSON object, collecting every error in
// field order as pydantic does.
type Object struct {
	obj  map[string]any
	loc  []any
	errs Errors
}

// Fail records an error for the named field.
func (o *Object) Fail(name any, typ, msg string) {
	o.errs.Add(typ, msg, append(append([]any{}, o.loc...), name)...)
}

// Err is the 422 for every failure so far, or nil.
func (o *Object) Err() error { return o.errs.Err() }

// Has reports whether the key is present (even with a null value).
func (o *Object) Has(name string) bool { _, ok := o.obj[name]; return ok }

// lookup returns the value, reporting "missing" for a required absent key.
func (o *Object) lookup(name string, required bool) (any, bool) {
	v, ok := o.obj[name]
	if !ok && required {
		o.Fail(name, "missing", "Field required")
	}
	return v, ok
}

// Str validates `name: str` (required) or a `name: str = "..."` field.
// pydantic v2 does not turn numbers into strings.
func (o *Object) Str(name string, required bool) string {
	v, ok := o.lookup(name, required)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		o.Fail(name, "string_type", "Input should be a valid string")
	}
	return s
}

// OptStr validates `name: str | None = None`; nil when absent or null.
func (o *Object) OptStr(name string) *string {
	v, ok := o.obj[name]
	if !ok || v == nil {
		return nil
	}
	s, isStr := v.(string)
	if !isStr {
		o.Fail(name, "string_type", "Input should be a valid string")
		return nil
	}
	return &s
}

// StrList validates `name: list[str]`; with nullable, null is allowed and
// reported by the second result.
func (o *Object) StrList(name string, required, nullable bool) ([]string, bool) {
	v, ok := o.lookup(name, required)
	if !ok {
		return nil, false
	}
	if v == nil && nullable {
		return nil, true
	}
	items, isList := v.([]any)
	if !isList {
		o.Fail(name, "list_type", "Input should be a valid list")
		return nil, false
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, isStr := it.(string)
		if !isStr {
			o.errs.Add("string_type", "Input should be a valid string", append(append([]any{}, o.loc...), name, i)...)
			continue
		}
		out = append(out, s)
	}
	return out, false
}

// Bool validates `name: bool = def`.
func (o *Object) Bool(name string, def bool) bool {
	v, ok := o.obj[name]
	if !ok {
		return def
	}
	b, typ, msg := LaxBool(v)
	if typ != "" {
		o.Fail(name, typ, msg)
	}
	return b
}

// OptBool validates `name: bool | None = None`.
func (o *Object) OptBool(name string) *bool {
	v, ok := o.obj[name]
	if !ok || v == nil {
		return nil
	}
	b, typ, msg := LaxBool(v)
	if typ != "" {
		o.Fail(name, typ, msg)
		return nil
	}
	return &b
}

// Int validates a required `name: int`.
func (o *Object) Int(name string) int64 {
	v, ok := o.lookup(name, true)
	if !ok {
		return 0
	}
	return o.int(name, v, 0)
}

// IntOr validates `name: int = def`.
func (o *Object) IntOr(name string, def int64) int64 {
	v, ok := o.obj[name]
	if !ok {
		return def
	}
	return o.int(name, v, def)
}

func (o *Object) int(name string, v any, def int64) int64 {
	n, typ, msg := LaxInt(v)
	if typ != "" {
		o.Fail(name, typ, msg)
		return def
	}
	return n
}

// Dict validates `name: dict` (required) or `name: dict = {}`. A null is an
// error either way (the field is not Optional).
func (o *Object) Dict(name string, required bool) (map[string]any, bool) {
	v, ok := o.lookup(name, required)
	if !ok {
		return nil, false
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		o.Fail(name, "dict_type", "Input should be a valid dictionary")
		return nil, false
	}
	return m, true
}

// Model validates a nested required model field; its errors reach o
// through Merge.
func (o *Object) Model(name string) *Object {
	v, ok := o.lookup(name, true)
	if !ok {
		return nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		o.Fail(name, "model_attributes_type", "Input should be a valid dictionary or object to extract fields from")
		return nil
	}
	return &Object{obj: m, loc: append(append([]any{}, o.loc...), name)}
}

// Merge adds a nested object's errors to o.
func (o *Object) Merge(n *Object) {
	if n != nil {
		o.errs = append(o.errs, n.errs...)
	}
}

// Literal validates a required `name: Literal[want]`.
func (o *Object) Literal(name, want string) string {
	v, ok := o.lookup(name, true)
	if !ok {
		return ""
	}
	if s, _ := v.(string); s != want {
		o.Fail(name, "literal_error", "Input should be '"+want+"'")
		return ""
	}
	return want
}

// OptDatetime validates `name: datetime | None = None` (see LaxDatetime).
func (o *Object) OptDatetime(name string) *time.Time {
	v, ok := o.obj[name]
	if !ok || v == nil {
		return nil
	}
	t, typ, msg := LaxDatetime(v)
	if typ != "" {
		o.Fail(name, typ, msg)
		return nil
	}
	return &t
}
