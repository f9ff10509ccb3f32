package proxy

import (
	"context"
	"errors"
	"net/http"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Contract is what one route answers when Prefect rejects its request: the
// part of the Python proxy's behaviour that differs from route to route.
// Everything else (upstream faults, the answer of an *apperr.Error already
// decided) is the same for every route and lives in translate.
type Contract struct {
	// Code is the status class of a rejection; "" is the Python proxy's
	// catch-all 400.
	Code apperr.Code
	// Message is the route's fixed detail.
	Message string
	// PrefectText: the detail is Prefect's own response text instead (the
	// Python routes that had no error mapping and passed it on); Message is
	// then used only when there is no Prefect answer.
	PrefectText bool
}

// failed is the Python proxy's `except Exception: raise HTTPException(400, msg)`.
func failed(msg string) Contract { return Contract{Message: msg} }

// prefectText is the 400 whose detail is Prefect's answer; fallback when
// there is none.
func prefectText(fallback string) Contract { return Contract{Message: fallback, PrefectText: true} }

// translate is the one mapping from a failure to the route's answer, for
// reads (in the api) and writes (in a worker, replayed by the api) alike:
//
//  1. an *apperr.Error is an answer already decided: it passes through;
//  2. an upstream fault (the client went away, Prefect unreachable, slow,
//     503, 5xx, refusing our credentials) is 499/502/503/504 with a detail,
//     whatever the route: the deliberate fix over the Python proxy's bare
//  500. It wraps err, so a write job still retries what prefect.Retryable
//     calls retryable;
//  3. anything else Prefect rejected is the route's Contract.
func translate(err error, c Contract) error {
	if err == nil {
		return nil
	}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return ae
	}
	if up := upstreamErr(err); up != nil {
		return up
	}
	code := c.Code
	if code == "" {
		code = apperr.BadRequest
	}
	var pe *prefect.APIError
	if c.PrefectText && errors.As(err, &pe) {
		return apperr.Wrap(code, err, "%s", pe.Body)
	}
	return apperr.Wrap(code, err, "%s", c.Message)
}

// isUpstream reports whether err is Prefect (or the client) failing rather
// than Prefect rejecting the request.
func isUpstream(err error) bool { return upstreamErr(err) != nil }

// upstreamErr maps Prefect being unreachable, slow or failing to
// 502/503/504 (a client gone to 499), or returns nil when err is not an
// upstream fault.
func upstreamErr(err error) *apperr.Error {
	// The caller (Django) went away; Prefect did nothing wrong.
	if errors.Is(err, context.Canceled) {
		return apperr.Wrap(apperr.Canceled, err, "the client closed the request")
	}
	var te *prefect.TransportError
	if errors.As(err, &te) {
		if te.Timeout {
			return apperr.Wrap(apperr.Timeout, err, "Prefect did not answer in time")
		}
		return apperr.Wrap(apperr.Upstream, err, "Prefect is unreachable")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return apperr.Wrap(apperr.Timeout, err, "Prefect did not answer in time")
	}
	var pe *prefect.APIError
	if errors.As(err, &pe) {
		switch {
		case pe.Status == http.StatusServiceUnavailable:
			return apperr.Wrap(apperr.Unavailable, err, "Prefect is unavailable (%d)", pe.Status)
		case pe.Status == http.StatusUnauthorized || pe.Status == http.StatusForbidden:
			return apperr.Wrap(apperr.Upstream, err, "Prefect refused the proxy's credentials (%d)", pe.Status)
		case pe.Retryable():
			return apperr.Wrap(apperr.Upstream, err, "Prefect failed (%d)", pe.Status)
		}
	}
	return nil
}
