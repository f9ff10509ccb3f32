// Package prefect is a typed client for the parts of Prefect 3's REST API the
// proxy uses. It owns the per-request timeout, retries (connection errors, 429
// and 5xx — Prefect's SQLite answers 503 while locked), auth, and paging
// through Prefect's 200-row cap.
package prefect

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/retry"
)

// PageSize is Prefect's default and maximum `limit` for /filter endpoints.
const PageSize = 200

// DefaultTimeout is PREFECT_API_TIMEOUT's default: per request, and the
// bound of a whole read. Under Django's own 30 s, so a slow Prefect is a 504
// with a detail rather than Django's "connection error".
const DefaultTimeout = 20 * time.Second

// Config holds what the client needs; zero values get sensible defaults.
type Config struct {
	BaseURL    *url.URL // e.g. http://127.0.0.1:4200/api
	Timeout    time.Duration
	AuthString string // basic auth "user:pass"
	APIKey     string // bearer
	HTTPClient *http.Client
	// Retry governs retries of idempotent calls (reads and filters).
	Retry RetryPolicy
	// Instrument, if set, wraps the transport (metrics: internal/obs).
	Instrument func(http.RoundTripper) http.RoundTripper
}

// RetryPolicy is exponential backoff with jitter.
type RetryPolicy struct {
	Attempts int           // total attempts, including the first; 1 disables retries
	Base     time.Duration // first delay
	Max      time.Duration // cap per delay
}

// DefaultRetry absorbs a short Prefect hiccup (a locked SQLite) without
// outliving Django's own timeout.
var DefaultRetry = RetryPolicy{Attempts: 4, Base: 100 * time.Millisecond, Max: 2 * time.Second}

// Client talks to one Prefect server.
type Client struct {
	base    string
	timeout time.Duration
	auth    string
	http    *http.Client
	retry   RetryPolicy
}

// New builds a client.
func New(cfg Config) *Client {
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 256
		tr.MaxIdleConnsPerHost = 128
		// Prefect's uvicorn closes idle keep-alive connections after 5 s; expire
		// ours first so we never write into a connection it is closing.
		tr.IdleConnTimeout = 4 * time.Second
		hc = &http.Client{Transport: tr}
	}
	if cfg.Instrument != nil {
		wrapped := *hc
		wrapped.Transport = cfg.Instrument(hc.Transport)
		hc = &wrapped
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retry.Attempts <= 0 {
		cfg.Retry = DefaultRetry
	}
	c := &Client{
		base:    strings.TrimRight(cfg.BaseURL.String(), "/"),
		timeout: cfg.Timeout,
		http:    hc,
		retry:   cfg.Retry,
	}
	switch {
	case cfg.APIKey != "":
		c.auth = "Bearer " + cfg.APIKey
	case cfg.AuthString != "":
		c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.AuthString))
	}
	return c
}

// BaseURL is the API root the client talks to.
func (c *Client) BaseURL() string { return c.base }

// Timeout is the per-request timeout.
func (c *Client) Timeout() time.Duration { return c.timeout }

// APIError is a non-2xx answer from Prefect.
type APIError struct {
	Method string
	Path   string
	Status int
	Body   string // Prefect's raw response text, truncated
	// retryAfter is the answer's Retry-After, capped at maxRetryAfter.
	retryAfter time.Duration
}

// maxRetryAfter caps how long a read waits on Prefect's Retry-After: a read
// serves a waiting Django request, and PREFECT_API_TIMEOUT bounds each try.
const maxRetryAfter = 10 * time.Second

// RetryAfter is what Prefect asked the client to wait before trying again.
func (e *APIError) RetryAfter() time.Duration { return e.retryAfter }

// Error names the call and Prefect's short message only: Prefect's 422 bodies
// echo the request (which may hold a secret block's value), so Body is never
// part of the error text that reaches logs.
func (e *APIError) Error() string {
	return fmt.Sprintf("prefect %s %s: %d %s", e.Method, e.Path, e.Status, e.Message())
}

// Message is Prefect's "detail" or "exception_message" when it is a plain string.
func (e *APIError) Message() string {
	var m struct {
		Detail           any    `json:"detail"`
		ExceptionMessage string `json:"exception_message"`
	}
	if json.Unmarshal([]byte(e.Body), &m) == nil {
		if s, ok := m.Detail.(string); ok {
			return s
		}
		return m.ExceptionMessage
	}
	return ""
}

// NotFound reports whether Prefect answered 404.
func (e *APIError) NotFound() bool { return e.Status == http.StatusNotFound }

// Retryable reports whether the same request may succeed later.
func (e *APIError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// TransportError is a failure to get any answer from Prefect.
type TransportError struct {
	Method  string
	Path    string
	Timeout bool
	Err     error
}

func (e *TransportError) Error() string {
	kind := "unreachable"
	if e.Timeout {
		kind = "timed out"
	}
	return fmt.Sprintf("prefect %s %s: %s: %v", e.Method, e.Path, kind, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// IsNotFound reports whether err is Prefect's 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.NotFound()
}

// IsStatus reports whether err is a Prefect answer with the given status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// Retryable reports whether err is worth retrying (connection error, 429, 5xx).
func Retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	var te *TransportError
	return errors.As(err, &te)
}

// Get sends GET path and decodes the JSON answer into out (if non-nil). Retried.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.Do(ctx, http.MethodGet, path, nil, out, true)
}

// Post sends a POST that only reads (a /filter); it is retried.
func (c *Client) PostRead(ctx context.Context, path string, body, out any) error {
	return c.Do(ctx, http.MethodPost, path, body, out, true)
}

// Do sends one request; with idempotent it retries per the policy.
// A 204 or empty body leaves out untouched.
func (c *Client) Do(ctx context.Context, method, path string, body, out any, idempotent bool) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("prefect: encode %s %s: %w", method, path, err)
		}
	}
	attempts := 1
	if idempotent {
		attempts = c.retry.Attempts
	}
	return retry.Do(ctx, attempts, retry.Exponential{Base: c.retry.Base, Max: c.retry.Max}, func(ctx context.Context) error {
		err := c.once(ctx, method, path, payload, out)
		// A timeout already spent a whole PREFECT_API_TIMEOUT; retrying would
		// multiply the wait the caller sees.
		var te *TransportError
		if err != nil && (!Retryable(err) || errors.As(err, &te) && te.Timeout) {
			return retry.Permanent(err)
		}
		return err
	})
}

func (c *Client) once(ctx context.Context, method, path string, payload []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("prefect: build %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &TransportError{Method: method, Path: path, Timeout: isTimeout(ctx, err), Err: err}
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	if err != nil {
		return &TransportError{Method: method, Path: path, Timeout: isTimeout(ctx, err), Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		text := string(data)
		if len(text) > 2000 {
			text = text[:2000]
		}
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Body: text,
			retryAfter: min(retry.After(resp.Header.Get("Retry-After"), time.Now()), maxRetryAfter)}
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &APIError{Method: method, Path: path, Status: resp.StatusCode,
			Body: "invalid JSON from Prefect: " + err.Error()}
	}
	return nil
}

func isTimeout(ctx context.Context, err error) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// FilterAll pages through a /filter endpoint. body is the filter without
// limit/offset; limit <= 0 means every row. Rows are returned raw so callers
// can pass Prefect's JSON through untouched.
func (c *Client) FilterAll(ctx context.Context, path string, body map[string]any, limit int) ([]json.RawMessage, error) {
	var all []json.RawMessage
	offset := 0
	if v, ok := body["offset"].(int); ok {
		offset = v
	}
	for {
		page := PageSize
		if limit > 0 && limit-len(all) < page {
			page = limit - len(all)
		}
		req := make(map[string]any, len(body)+2)
		for k, v := range body {
			req[k] = v
		}
		req["limit"] = page
		req["offset"] = offset
		var rows []json.RawMessage
		if err := c.PostRead(ctx, path, req, &rows); err != nil {
			return nil, err
		}
		all = append(all, rows...)
		offset += len(rows)
		if len(rows) < page || (limit > 0 && len(all) >= limit) {
			return all, nil
		}
	}
}

// readBody reads a whole answer into one buffer of its announced length (what
// io.ReadAll would grow to through several copies).
func readBody(resp *http.Response) ([]byte, error) {
	const maxPrealloc = 4 << 20
	n := resp.ContentLength
	if n < 0 || n > maxPrealloc {
		return io.ReadAll(resp.Body)
	}
	buf := make([]byte, 0, n+1) // +1: the read that sees EOF needs no growth
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
