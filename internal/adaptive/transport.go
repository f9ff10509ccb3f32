package adaptive

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
)

type ctxKey struct{}

// WithLimiter returns a context whose HTTP calls through Transport take a
// slot of l. The worker marks its write jobs' contexts this way, so the
// Prefect client it shares with the api's reads (embedded mode) limits only
// the writes.
func WithLimiter(ctx context.Context, l *Limiter) context.Context {
	if l == nil {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext is the Limiter WithLimiter put in ctx, or nil.
func FromContext(ctx context.Context) *Limiter {
	l, _ := ctx.Value(ctxKey{}).(*Limiter)
	return l
}

// Transport wraps next so that a request whose context carries a Limiter
// waits for a slot, and gives it back, with the call's outcome, once the
// answer's body is closed; other requests pass straight through. Outcomes:
// 429, 502, 503 and 504 are overloads, as are a timeout and a refused or
// broken connection; any other answer is a success; a call its caller
// cancelled says nothing.
func Transport(next http.RoundTripper) http.RoundTripper { return transport{next} }

type transport struct{ next http.RoundTripper }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	l := FromContext(req.Context())
	if l == nil {
		return t.next.RoundTrip(req)
	}
	release, err := l.Acquire(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		if errors.Is(req.Context().Err(), context.Canceled) {
			release(Ignore)
		} else {
			release(Overload)
		}
		return nil, err
	}
	o := Success
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		o = Overload
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: func() { release(o) }}
	return resp, nil
}

// releasingBody gives the slot back when the answer has been read and closed.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
