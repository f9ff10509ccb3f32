// Package apperr defines the one error type the service returns to clients.
// Every layer returns *Error (or wraps one); the HTTP layer maps Code to a
// status in a single table, so a handler never picks a status itself.
package apperr

import (
	"errors"
	"fmt"
	"net/http"
)

// Code classifies an error by what the client should make of it.
type Code string

const (
	BadRequest     Code = "bad_request"     // 400: the Python proxy's catch-all "failed to ..." answer
	Unauthorized   Code = "unauthorized"    // 401
	Forbidden      Code = "forbidden"       // 403
	NotFound       Code = "not_found"       // 404
	Conflict       Code = "conflict"        // 409
	Invalid        Code = "invalid"         // 422: request validation
	TooLarge       Code = "too_large"       // 413
	Internal       Code = "internal"        // 500: a bug of ours, never a client or upstream fault
	NotImplemented Code = "not_implemented" // 501
	Upstream       Code = "upstream"        // 502: Prefect unreachable or answered 5xx
	Unavailable    Code = "unavailable"     // 503: a dependency (Redis, Prefect) is not ready
	Timeout        Code = "timeout"         // 504: Prefect or a job did not answer in time
	// Canceled is the client giving up before the answer (nginx's 499): not
	// an upstream fault, so it must not page an operator as a 502 would.
	Canceled Code = "canceled"
)

// StatusClientClosedRequest is nginx's non-standard 499; the client never sees it.
const StatusClientClosedRequest = 499

var statusOf = map[Code]int{
	BadRequest:     http.StatusBadRequest,
	Unauthorized:   http.StatusUnauthorized,
	Forbidden:      http.StatusForbidden,
	NotFound:       http.StatusNotFound,
	Conflict:       http.StatusConflict,
	Invalid:        http.StatusUnprocessableEntity,
	TooLarge:       http.StatusRequestEntityTooLarge,
	Internal:       http.StatusInternalServerError,
	NotImplemented: http.StatusNotImplemented,
	Upstream:       http.StatusBadGateway,
	Unavailable:    http.StatusServiceUnavailable,
	Timeout:        http.StatusGatewayTimeout,
	Canceled:       StatusClientClosedRequest,
}

// FieldError is one entry of a FastAPI-style validation detail list.
type FieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// Error is the service's single error type.
type Error struct {
	Code    Code
	Message string // safe to show to the client
	// Fields, when set, replaces the string detail with FastAPI's list shape (422).
	Fields []FieldError
	// Extra keys merged into the JSON body next to "detail" (e.g. job_id).
	Extra map[string]any
	// Err is the cause, for logs only; never shown to the client.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Status is the HTTP status for the error's code.
func (e *Error) Status() int {
	if s, ok := statusOf[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Body is the JSON body sent to the client.
func (e *Error) Body() map[string]any {
	body := map[string]any{}
	for k, v := range e.Extra {
		body[k] = v
	}
	if len(e.Fields) > 0 {
		body["detail"] = e.Fields
	} else {
		body["detail"] = e.Message
	}
	return body
}

// New builds an Error.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an Error that keeps cause for logging.
func Wrap(code Code, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// Validation builds a 422 with FastAPI's list-shaped detail.
func Validation(fields ...FieldError) *Error {
	msg := "validation error"
	if len(fields) > 0 {
		msg = fields[0].Msg
	}
	return &Error{Code: Invalid, Message: msg, Fields: fields}
}

// Field is a shorthand for one validation entry.
func Field(typ, msg string, loc ...any) FieldError {
	return FieldError{Loc: loc, Msg: msg, Type: typ}
}

// From returns err as an *Error, turning anything unknown into Internal.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Internal, Message: "internal error", Err: err}
}

// CodeOf returns the code of err, or "" if it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
