package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestMain stops the package-wide Prefect server and apis after all tests.
// Every e2e file shares it; do not add another TestMain.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// testJobKey is a fixed JOB_ENCRYPTION_KEY (32 bytes, base64) for apis and
// workers that share a real Redis.
const testJobKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// sharedAPI is one api process (embedded Redis, in-process worker) in front
// of the shared Prefect, for tests that only need the default configuration.
var sharedAPI struct {
	once sync.Once
	url  string
	err  error
}

// apiFor returns the shared Prefect and the URL of the shared api. Tests
// that need their own configuration start one with testenv.StartAPI.
func apiFor(t *testing.T) (*testenv.PrefectServer, string) {
	t.Helper()
	p := testenv.Prefect(t)
	sharedAPI.once.Do(func() {
		proc, err := testenv.StartAPIProcess(map[string]string{"PREFECT_API_URL": p.URL})
		if err != nil {
			sharedAPI.err = err
			return
		}
		testenv.AtShutdown(func() { proc.Stop(10 * time.Second) })
		sharedAPI.url = proc.URL
	})
	if sharedAPI.err != nil {
		t.Fatalf("shared api: %v", sharedAPI.err)
	}
	return p, sharedAPI.url
}

// httpResult is an HTTP answer read whole.
type httpResult struct {
	Status  int
	Header  http.Header
	Body    []byte
	Elapsed time.Duration
}

var httpClient = &http.Client{Timeout: 90 * time.Second}

// send makes one request; body (if not nil) is sent as JSON, or as is when it
// is a string. headers are name, value pairs.
func send(t *testing.T, method, url string, body any, headers ...string) httpResult {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("x-ddp-org", "e2e")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: raw, Elapsed: time.Since(start)}
}

// value decodes the body as JSON (numbers as float64).
func (r httpResult) value(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body is not JSON (%d): %q", r.Status, r.Body)
	}
	return v
}

// object decodes a JSON object body.
func (r httpResult) object(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.value(t).(map[string]any)
	if !ok {
		t.Fatalf("body is not a JSON object (%d): %s", r.Status, r.Body)
	}
	return m
}

// list decodes a JSON array body.
func (r httpResult) list(t *testing.T) []any {
	t.Helper()
	l, ok := r.value(t).([]any)
	if !ok {
		t.Fatalf("body is not a JSON array (%d): %s", r.Status, r.Body)
	}
	return l
}

// expect fails the test unless the status is want.
func (r httpResult) expect(t *testing.T, want int) httpResult {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d; body: %s", r.Status, want, r.Body)
	}
	return r
}

// detail checks the error body is {"detail": <string>} and returns it.
func (r httpResult) detail(t *testing.T) string {
	t.Helper()
	d, ok := r.object(t)["detail"].(string)
	if !ok {
		t.Fatalf("detail is not a string: %s", r.Body)
	}
	return d
}

// validation checks a 422 body is FastAPI's {"detail": [{loc, msg, type}]}
// and returns the entries.
func (r httpResult) validation(t *testing.T) []map[string]any {
	t.Helper()
	r.expect(t, http.StatusUnprocessableEntity)
	items, ok := r.object(t)["detail"].([]any)
	if !ok || len(items) == 0 {
		t.Fatalf("422 detail is not a non-empty list: %s", r.Body)
	}
	var out []map[string]any
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok || m["loc"] == nil || m["msg"] == nil || m["type"] == nil {
			t.Fatalf("422 entry lacks loc/msg/type: %s", r.Body)
		}
		out = append(out, m)
	}
	return out
}

// str reads a string field, failing when it is not one.
func str(t *testing.T, m map[string]any, k string) string {
	t.Helper()
	s, ok := m[k].(string)
	if !ok {
		t.Fatalf("field %q is %T (%v), want string, in %v", k, m[k], m[k], m)
	}
	return s
}

// hasKeys fails unless m has every key (with any value, null included).
func hasKeys(t *testing.T, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("missing key %q in %v", k, m)
		}
	}
}

// asJSON re-encodes v for comparison regardless of map order.
func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
