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

func TestUpstreamErrClassifies(t *testing.T) {
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
			got := UpstreamErr(tc.err)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("got %v, want nil", got)
			case tc.want != "" && (got == nil || got.Code != tc.want):
				t.Fatalf("got %v, want code %s", got, tc.want)
			}
		})
	}
	if s := UpstreamErr(context.Canceled).Status(); s != 499 {
		t.Errorf("a closed request is logged as 499, got %d", s)
	}
}
