// Package prefecttest is an httptest fake of Prefect's REST API for fast unit
// tests. Register handlers with Go 1.22 ServeMux patterns relative to /api;
// every request is recorded so tests can assert the calls made.
package prefecttest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Call is one request the fake received.
type Call struct {
	Method string
	Path   string
	Query  url.Values
	Body   []byte
}

// JSON decodes the call's body.
func (c Call) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(c.Body, &m); err != nil {
		t.Fatalf("body of %s %s is not a JSON object: %v (%s)", c.Method, c.Path, err, c.Body)
	}
	return m
}

// Server is a fake Prefect.
type Server struct {
	*httptest.Server
	mux   *http.ServeMux
	mu    sync.Mutex
	calls []Call
}

// New starts a fake Prefect; it is closed when the test ends.
func New(t testing.TB) *Server {
	s := &Server{mux: http.NewServeMux()}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body})
		s.mu.Unlock()
		r.Body = io.NopCloser(bytesReader(body))
		s.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// Handle registers a handler; pattern is like "GET /flow_runs/{id}" (no /api prefix).
func (s *Server) Handle(pattern string, h http.HandlerFunc) {
	method, path, ok := cut(pattern)
	if ok {
		s.mux.HandleFunc(method+" /api"+path, h)
		return
	}
	s.mux.HandleFunc("/api"+pattern, h)
}

// JSON registers a handler that answers status with v encoded as JSON.
func (s *Server) JSON(pattern string, status int, v any) {
	s.Handle(pattern, func(w http.ResponseWriter, _ *http.Request) { Write(w, status, v) })
}

// Calls returns the requests received so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallsTo returns the requests received for method and path (with /api).
func (s *Server) CallsTo(method, path string) []Call {
	var out []Call
	for _, c := range s.Calls() {
		if c.Method == method && c.Path == "/api"+path {
			out = append(out, c)
		}
	}
	return out
}

// Client returns a prefect.Client pointed at the fake, with fast retries.
func (s *Server) Client() *prefect.Client {
	u, _ := url.Parse(s.URL + "/api")
	return prefect.New(prefect.Config{
		BaseURL: u,
		Timeout: 2 * time.Second,
		Retry:   prefect.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond},
	})
}

// Write answers status with v as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func cut(pattern string) (string, string, bool) {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == ' ' {
			return pattern[:i], pattern[i+1:], true
		}
	}
	return "", pattern, false
}
