package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

func TestUpstreamFaultsClassify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want apperr.Code // "" = not an upstream fault
	}{
		{"client went away", &prefect.TransportError{Method: "GET", Path: "/x", Err: fmt.Errorf("get: %w", context.Canceled)}, apperr.Canceled},
		{"connection refused", &prefect.TransportError{Method: "GET", Path: "/x", Err: errors.New("connection refused")}, apperr.Upstream},
		{"timeout", &prefect.TransportError{Method: "GET", Path: "/x", Timeout: true, Err: context.DeadlineExceeded}, apperr.Timeout},
		{"deadline of the whole read", fmt.Errorf("page 3: %w", context.DeadlineExceeded), apperr.Timeout},
		{"sqlite locked", &prefect.APIError{Status: http.StatusServiceUnavailable}, apperr.Unavailable},
		{"prefect 500", &prefect.APIError{Status: http.StatusInternalServerError}, apperr.Upstream},
		{"bad credentials", &prefect.APIError{Status: http.StatusUnauthorized}, apperr.Upstream},
		{"prefect 404 is the route's business", &prefect.APIError{Status: http.StatusNotFound}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := upstreamErr(tc.err)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("got %v, want nil", got)
			case tc.want != "" && (got == nil || got.Code != tc.want):
				t.Fatalf("got %v, want code %s", got, tc.want)
			}
		})
	}
	if s := upstreamErr(context.Canceled).Status(); s != 499 {
		t.Errorf("a closed request is logged as 499, got %d", s)
	}
}

func TestTranslateGivesEachRouteItsContract(t *testing.T) {
	t.Parallel()
	rejected := &prefect.APIError{Status: http.StatusConflict, Body: `{"detail":"taken"}`}
	decided := apperr.New(apperr.NotFound, "block not found")
	cases := []struct {
		name       string
		err        error
		contract   Contract
		wantStatus int
		wantDetail string
		retryable  bool
	}{
		{"rejection is the route's fixed 400", rejected, failed("failed to create"), 400, "failed to create", false},
		{"rejection with Prefect's text", rejected, prefectText("fallback"), 400, `{"detail":"taken"}`, false},
		{"Prefect's text without an answer falls back", errors.New("boom"), prefectText("fallback"), 400, "fallback", false},
		{"route-specific class", rejected, airbyteLookup, 502, airbyteLookup.Message, false},
		{"a decided answer passes through", decided, failed("x"), 404, "block not found", false},
		{"an upstream fault beats the contract and stays retryable",
			&prefect.APIError{Status: http.StatusBadGateway}, failed("x"), 502, "Prefect failed (502)", true},
		{"credentials refused", &prefect.APIError{Status: http.StatusForbidden}, prefectText("x"), 502,
			"Prefect refused the proxy's credentials (403)", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := apperr.From(translate(tc.err, tc.contract))
			if got.Status() != tc.wantStatus || got.Message != tc.wantDetail {
				t.Fatalf("got %d %q, want %d %q", got.Status(), got.Message, tc.wantStatus, tc.wantDetail)
			}
			if prefect.Retryable(got) != tc.retryable {
				t.Fatalf("retryable %v, want %v", prefect.Retryable(got), tc.retryable)
			}
		})
	}
	if translate(nil, failed("x")) != nil {
		t.Fatal("nil error translated")
	}
}
