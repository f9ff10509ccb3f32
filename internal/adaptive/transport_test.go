package adaptive

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestTransportReportsEachCallsOutcome(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		noLimiter bool
		broken    bool // the connection fails
		wantLimit int
	}{
		{name: "200 is a success", status: 200, wantLimit: 4},
		{name: "404 is an answer", status: 404, wantLimit: 4},
		{name: "500 is an answer", status: 500, wantLimit: 4},
		{name: "503 is an overload", status: 503, wantLimit: 3},
		{name: "429 is an overload", status: 429, wantLimit: 3},
		{name: "504 from a gateway is an overload", status: 504, wantLimit: 3},
		{name: "a refused connection is an overload", broken: true, wantLimit: 3},
		{name: "a call without a limiter passes through", status: 503, noLimiter: true, wantLimit: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte("body"))
			}))
			url := srv.URL
			srv.Close()
			if !tc.broken {
				srv = httptest.NewServer(srv.Config.Handler)
				defer srv.Close()
				url = srv.URL
			}
			l := New(Config{Max: 4, Initial: 4})
			ctx := t.Context()
			if !tc.noLimiter {
				ctx = WithLimiter(ctx, l)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := (&http.Client{Transport: Transport(http.DefaultTransport)}).Do(req)
			if err == nil {
				if l.InFlight() != 0 && tc.noLimiter {
					t.Error("a call without a limiter took a slot")
				}
				_, _ = io.ReadAll(resp.Body)
				_ = resp.Body.Close()
			} else if !tc.broken {
				t.Fatal(err)
			}
			if got := l.Limit(); got != tc.wantLimit {
				t.Errorf("limit = %d, want %d", got, tc.wantLimit)
			}
			if l.InFlight() != 0 {
				t.Errorf("%d slots held after the body was closed", l.InFlight())
			}
		})
	}
}

func TestTransportHoldsTheSlotUntilTheBodyIsClosed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("x")) }))
	defer srv.Close()
	l := New(Config{Max: 1, Initial: 1})
	req, _ := http.NewRequestWithContext(WithLimiter(t.Context(), l), http.MethodGet, srv.URL, nil)
	resp, err := (&http.Client{Transport: Transport(http.DefaultTransport)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if l.InFlight() != 1 {
		t.Errorf("in flight %d while the body is open, want 1", l.InFlight())
	}
	_ = resp.Body.Close()
	_ = resp.Body.Close()
	if l.InFlight() != 0 {
		t.Errorf("in flight %d after Close, want 0", l.InFlight())
	}
}

func TestTransportGivesUpWaitingWithTheCallersContext(t *testing.T) {
	t.Parallel()
	l := New(Config{Max: 1, Initial: 1})
	hold, _ := l.Acquire(t.Context())
	defer hold(Ignore)
	ctx, cancel := context.WithCancel(WithLimiter(t.Context(), l))
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/", nil)
	_, err := (&http.Client{Transport: Transport(http.DefaultTransport)}).Do(req)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if l.Limit() != 1 || l.Waiting() != 0 {
		t.Errorf("limit %d waiting %d; a call that never ran must change nothing", l.Limit(), l.Waiting())
	}
}
