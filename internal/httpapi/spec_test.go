package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// specRouter is /openapi.json loaded, validated and routed by kin-openapi.
// Loaded once for the package's tests; validation runs under specMu because
// kin-openapi compiles and caches schemas as it meets them.
var (
	loadSpec = sync.OnceValues(func() (routers.Router, error) {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(openAPIDoc)
		if err != nil {
			return nil, fmt.Errorf("openapi.json does not load: %w", err)
		}
		if err := doc.Validate(loader.Context); err != nil {
			return nil, fmt.Errorf("openapi.json is not a valid OpenAPI document: %w", err)
		}
		// The documented non-JSON answers (the docs page and its assets,
		// metrics) are checked for status and content type only.
		for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/png", "text/plain"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
		}
		return gorillamux.NewRouter(doc)
	})
	specMu sync.Mutex
)

// specRoute finds the operation of req. Both slash forms of every path are
// served, so a path the document writes with a trailing slash matches
// without one and the other way round. A request the document has no
// operation for is an error, unless the router answered it 404 or 405 (its
// own answers to paths and methods it does not serve).
func specRoute(t *testing.T, req *http.Request, status int) (*routers.Route, map[string]string) {
	t.Helper()
	router, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	try := func(path string) (*routers.Route, map[string]string, error) {
		r := req.Clone(context.Background())
		r.URL.Path, r.URL.RawPath = path, ""
		return router.FindRoute(r)
	}
	p := req.URL.Path
	if strings.HasPrefix(p, "/monitoring/") && p != "/monitoring/" {
		return nil, nil // asynqmon's own pages and API, documented as GET /monitoring/
	}
	route, params, err := try(p)
	if err != nil {
		alt := p + "/"
		if strings.HasSuffix(p, "/") {
			alt = strings.TrimSuffix(p, "/")
		}
		route, params, err = try(alt)
	}
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s answered %d but is not in openapi.json: %v", req.Method, p, status, err)
		}
		return nil, nil
	}
	return route, params
}

// specInput is the kin-openapi view of one request; the body is re-readable.
func specInput(req *http.Request, body []byte, route *routers.Route, params map[string]string) *openapi3filter.RequestValidationInput {
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	return &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
}

// validateRequest reports how req differs from what the document accepts.
func validateRequest(t *testing.T, req *http.Request, body []byte) error {
	t.Helper()
	route, params := specRoute(t, req, 0)
	if route == nil {
		return nil
	}
	in := specInput(req, body, route, params)
	// OpenAPI has no way to describe a body sent without a media type
	// (which the relay's ingress accepts): check the rest of the request.
	in.Options.ExcludeRequestBody = req.Header.Get("Content-Type") == "" && len(body) > 0
	specMu.Lock()
	defer specMu.Unlock()
	return openapi3filter.ValidateRequest(context.Background(), in)
}

// validateResponse reports how an answer to req differs from the document:
// an undocumented status, another content type, or a body outside its schema.
func validateResponse(t *testing.T, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	t.Helper()
	route, params := specRoute(t, req, status)
	if route == nil {
		return nil
	}
	in := specInput(req, reqBody, route, params)
	specMu.Lock()
	defer specMu.Unlock()
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
}

// specChecked wraps the api's handler so that every answer a test gets is
// also checked against /openapi.json: the document then describes what the
// routes really answer in every case the tests exercise, not only the cases
// written for it.
func specChecked(t *testing.T, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var reqBody []byte
		if r.Body != nil {
			reqBody, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(reqBody))
		}
		orig := r.Clone(context.Background())
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		// A request the route accepted must be one the document accepts.
		if rec.Code < 300 {
			if err := validateRequest(t, orig, reqBody); err != nil {
				t.Errorf("openapi.json rejects %s %s %.300s, which the route answered %d:\n%v",
					orig.Method, orig.URL, reqBody, rec.Code, err)
			}
		}
		if err := validateResponse(t, orig, reqBody, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("openapi.json does not describe the answer to %s %s (%d %.300s):\n%v",
				orig.Method, orig.URL, rec.Code, rec.Body.String(), err)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}
