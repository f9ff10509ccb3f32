package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
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
// own answers to paths and methods it does not serve): then route is nil.
func specRoute(req *http.Request, status int) (*routers.Route, map[string]string, error) {
	router, err := loadSpec()
	if err != nil {
		return nil, nil, err
	}
	try := func(path string) (*routers.Route, map[string]string, error) {
		r := req.Clone(context.Background())
		r.URL.Path, r.URL.RawPath = path, ""
		return router.FindRoute(r)
	}
	p := req.URL.Path
	if strings.HasPrefix(p, "/monitoring/") && p != "/monitoring/" {
		return nil, nil, nil // asynqmon's own pages and API, documented as GET /monitoring/
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
			return nil, nil, fmt.Errorf("%s %s answered %d but is not in openapi.json: %v", req.Method, p, status, err)
		}
		return nil, nil, nil
	}
	return route, params, nil
}

// specInput is the kin-openapi view of one request; the body is re-readable.
func specInput(req *http.Request, body []byte, route *routers.Route, params map[string]string) *openapi3filter.RequestValidationInput {
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	return &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
}

// validateRequest reports how req differs from what the document accepts.
func validateRequest(req *http.Request, body []byte) error {
	route, params, err := specRoute(req, 0)
	if route == nil {
		return err
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
func validateResponse(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	return validateResponseBody(req, reqBody, status, header, body, true)
}

// validateResponseBody is validateResponse; without withBody, only the
// status and the content type are checked.
func validateResponseBody(req *http.Request, reqBody []byte, status int, header http.Header, body []byte, withBody bool) error {
	route, params, err := specRoute(req, status)
	if route == nil {
		return err
	}
	in := specInput(req, reqBody, route, params)
	specMu.Lock()
	defer specMu.Unlock()
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			ExcludeResponseBody: !withBody},
	})
}

// specChecked wraps the api's handler so that every answer a test gets is
// also checked against /openapi.json: the document then describes what the
// routes really answer in every case the tests exercise, not only the cases
// written for it. The exchanges are only recorded here; TestMain checks them
// once every test has ended, so the checking takes no CPU from the tests
// that measure time.
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
		specLog.add(exchange{test: t.Name(), req: orig, reqBody: reqBody, status: rec.Code,
			header: rec.Header().Clone(), body: rec.Body.Bytes()})
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// exchange is one request a test sent through specChecked and its answer.
type exchange struct {
	test    string
	req     *http.Request
	reqBody []byte
	status  int
	header  http.Header
	body    []byte
	bigBody bool // body over specMaxBody, not kept
	op      string
}

// specLog holds the package's exchanges until TestMain checks them.
var specLog = &exchanges{taken: map[string]int{}}

type exchanges struct {
	mu    sync.Mutex
	list  []exchange
	taken map[string]int // operationId and status -> exchanges kept
}

// add keeps x for check. kin-openapi compiles a JSON Schema for each
// validation and the tests get thousands of answers (pages of hundreds of
// runs, retries, timeouts): the first specPerStatus answers of each
// operation and status are kept, and a body over specMaxBody is checked for
// status and content type only (the paging tests' long answers have the
// small ones' shape). Holding less also keeps the heap, which -race makes
// costly to collect, small while the tests run.
func (e *exchanges) add(x exchange) {
	route, _, err := specRoute(x.req, x.status)
	if route == nil && err == nil {
		return // not ours to check (asynqmon's pages, the router's 404/405)
	}
	if route != nil {
		x.op = route.Operation.OperationID
	}
	if len(x.body) > specMaxBody {
		x.body, x.bigBody = nil, true
	} else {
		x.body = bytes.Clone(x.body)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	key := fmt.Sprintf("%s %d", x.op, x.status)
	if e.taken[key]++; err == nil && e.taken[key] > specPerStatus {
		return
	}
	e.list = append(e.list, x)
}

// check validates the kept exchanges against the document and returns what
// differs.
func (e *exchanges) check() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var fails []string
	for _, x := range e.list {
		if _, _, err := specRoute(x.req, x.status); err != nil {
			fails = append(fails, x.test+": "+err.Error())
			continue
		}
		// A request the route accepted must be one the document accepts.
		if x.status < 300 {
			if err := validateRequest(x.req, x.reqBody); err != nil {
				fails = append(fails, fmt.Sprintf("%s: openapi.json rejects %s %s %.300s, which the route answered %d:\n%v",
					x.test, x.req.Method, x.req.URL, x.reqBody, x.status, err))
			}
		}
		if err := validateResponseBody(x.req, x.reqBody, x.status, x.header, x.body, !x.bigBody); err != nil {
			fails = append(fails, fmt.Sprintf("%s: openapi.json does not describe the answer to %s %s (%d %.300s):\n%v",
				x.test, x.req.Method, x.req.URL, x.status, x.body, err))
			continue
		}
		specSeen.add(x.op, x.status)
	}
	e.list = nil
	return fails
}

const (
	specPerStatus = 4
	specMaxBody   = 16 << 10
)

// specSeen records which operations the package's tests saw answer, and
// with which statuses, so that TestMain can tell which documented operations
// no test checks.
var specSeen = &seenOps{m: map[string]map[int]bool{}}

type seenOps struct {
	mu sync.Mutex
	m  map[string]map[int]bool // operationId -> statuses
}

func (s *seenOps) add(id string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[id] == nil {
		s.m[id] = map[int]bool{}
	}
	s.m[id][status] = true
}

// unchecked lists the documented operations that no test saw answer a
// success (2xx) or no test saw answer an error (4xx/5xx).
func (s *seenOps) unchecked() (noSuccess, noError []string, err error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDoc)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, path := range doc.Paths.InMatchingOrder() {
		for _, op := range doc.Paths.Value(path).Operations() {
			var ok, bad bool
			for st := range s.m[op.OperationID] {
				ok = ok || st < 300
				bad = bad || st >= 400
			}
			if !ok && hasResponse(op, "2") {
				noSuccess = append(noSuccess, op.OperationID)
			}
			if !bad && (hasResponse(op, "4") || hasResponse(op, "5")) {
				noError = append(noError, op.OperationID)
			}
		}
	}
	sort.Strings(noSuccess)
	sort.Strings(noError)
	return noSuccess, noError, nil
}

// hasResponse reports whether op documents a status of the class (its first digit).
func hasResponse(op *openapi3.Operation, class string) bool {
	for code := range op.Responses.Map() {
		if strings.HasPrefix(code, class) {
			return true
		}
	}
	return false
}

// The checker is live: answers that differ from the document are caught.
func TestSpecCheckRejectsWhatTheDocumentDoesNotSay(t *testing.T) {
	json := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
	}{
		{"a body outside the schema", "GET", "/proxy/flow_runs/x/poll", 200, json, `{"id": 5}`},
		{"an error without detail", "GET", "/proxy/flow_runs/x/poll", 502, json, `{"error": "down"}`},
		{"an undocumented status", "GET", "/proxy/flow_runs/x/poll", 418, json, `{"detail": "teapot"}`},
		{"another content type", "GET", "/livez", 200, http.Header{"Content-Type": {"text/plain"}}, `ok`},
		{"a job without its id", "POST", "/proxy/deployments/d/flow_run", 202, json, `{"status_url": "/jobs/x"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if err := validateResponse(req, nil, tc.status, tc.header, []byte(tc.body)); err == nil {
				t.Fatalf("%d %s was accepted", tc.status, tc.body)
			}
		})
	}
	req := httptest.NewRequest("POST", "/proxy/deployments/filter", nil)
	req.Header.Set("Content-Type", "application/json")
	if err := validateRequest(req, []byte(`{"deployment_ids": []}`)); err == nil {
		t.Fatal("a request without the required org_slug was accepted")
	}
}

// Every guarded operation answers 401 without credentials, in the
// documented shape; the operations routes answer as documented.
func TestOpenAPIDescribesGuardsAndOperations(t *testing.T) {
	// Not parallel: it runs before the parallel tests, whose fake Prefect
	// timeouts a burst of requests on a busy machine would eat into.
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDoc)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	fake := prefecttest.New(t)
	reg := prometheus.NewRegistry()
	deps := Deps{Config: config.Config{ProxyAPIToken: "tok", AdminToken: "adm"}, Log: log,
		Proxy: proxy.New(fake.Client(), log), Metrics: NewMetrics(reg),
		Monitoring: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html></html>")
		})}
	api := specChecked(t, New(deps))
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			if op.Security != nil && len(*op.Security) == 0 {
				continue // open: docs, probes, metrics, the relay's own key check
			}
			concrete := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "00000000-0000-4000-8000-000000000001")
			t.Run(method+" "+path, func(t *testing.T) {
				req := httptest.NewRequest(method, concrete, strings.NewReader(`{}`))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				api.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized {
					t.Fatalf("without credentials: %d %s", rec.Code, rec.Body.String())
				}
			})
		}
	}

	down := deps
	down.Ready = func(*gin.Context) error { return errors.New("redis not reachable") }
	notReady := specChecked(t, New(down))
	tests := []struct {
		name   string
		h      http.Handler
		path   string
		status int
	}{
		{"livez", api, "/livez", 200},
		{"readyz", api, "/readyz", 200},
		{"healthz", api, "/healthz", 200},
		{"readyz without redis", notReady, "/readyz", 503},
		{"healthz without redis", notReady, "/healthz", 503},
		{"metrics", api, "/metrics", 200},
		{"openapi", api, "/openapi.json", 200},
		{"docs", api, "/docs", 200},
		{"an asset", api, "/docs/assets/swagger-ui.css", 200},
		{"no such asset", api, "/docs/assets/nope.css", 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("%d %.200s", rec.Code, rec.Body.String())
			}
		})
	}
}
