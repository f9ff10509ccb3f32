// Package validate imitates FastAPI's request validation (pydantic v2, lax
// mode) for every route, read or write: the same inputs are accepted, coerced
// the same way, and every failure becomes one entry of a 422 list detail
// {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}.
//
// The rules were checked against the Python proxy's lock file (fastapi
// 0.136.3, pydantic 2.13.4, pydantic-core 2.46.4): a JSON number is never a
// str; "True"/"yes"/1 are bools; 5, 5.0, true, "5", " 5 ", "5.0" and "1_000"
// are ints, while 5.5, "5.5" and "5." are not; a datetime is an ISO-8601
// string, a date (midnight), or Unix seconds (milliseconds above 2e10) as a
// number or a numeric string; an absent or null body is "missing".
package validate

import "github.com/DalgoT4D/prefect-proxy-go/internal/apperr"

// Errors collects field errors in the order pydantic reports them.
type Errors []apperr.FieldError

// Add appends one entry.
func (e *Errors) Add(typ, msg string, loc ...any) {
	*e = append(*e, apperr.Field(typ, msg, loc...))
}

// Err is the 422 listing every entry, or nil when there is none.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return apperr.Validation(e...)
}
