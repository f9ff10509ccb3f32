package prefect_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

// client builds a client on the fake with fast retries and the given timeout.
func client(t *testing.T, f *prefecttest.Server, timeout time.Duration, attempts int) *prefect.Client {
	t.Helper()
	u, err := url.Parse(f.URL + "/api")
	if err != nil {
		t.Fatal(err)
	}
	return prefect.New(prefect.Config{
		BaseURL: u,
		Timeout: timeout,
		Retry:   prefect.RetryPolicy{Attempts: attempts, Base: time.Millisecond, Max: 4 * time.Millisecond},
	})
}

// sequence answers the given statuses in turn (the last one repeats).
func sequence(statuses ...int) (http.HandlerFunc, *atomic.Int32) {
	var n atomic.Int32
	return func(w http.ResponseWriter, _ *http.Request) {
		i := int(n.Add(1)) - 1
		st := statuses[min(i, len(statuses)-1)]
		if st == 200 {
			prefecttest.Write(w, 200, map[string]any{"ok": true, "call": i + 1})
			return
		}
		prefecttest.Write(w, st, map[string]any{"exception_message": "Service Unavailable"})
	}, &n
}

func TestRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		statuses   []int
		idempotent bool
		attempts   int
		wantCalls  int32
		wantStatus int // 0 = success
	}{
		{"503 then 200 is retried to success", []int{503, 200}, true, 4, 2, 0},
		{"429 then 200 is retried to success", []int{429, 200}, true, 4, 2, 0},
		{"500 twice then 200 succeeds on the third attempt", []int{500, 500, 200}, true, 4, 3, 0},
		{"persistent 503 gives up after every attempt", []int{503}, true, 3, 3, 503},
		{"404 is not retried", []int{404}, true, 4, 1, 404},
		{"422 is not retried", []int{422}, true, 4, 1, 422},
		{"a non-idempotent call is not retried on 503", []int{503, 200}, false, 4, 1, 503},
		{"attempts=1 disables retries", []int{503, 200}, true, 1, 1, 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := prefecttest.New(t)
			hf, n := sequence(tc.statuses...)
			f.Handle("/thing", hf)
			c := client(t, f, 2*time.Second, tc.attempts)
			var out map[string]any
			err := c.Do(context.Background(), http.MethodPost, "/thing", map[string]any{"a": 1}, &out, tc.idempotent)
			if got := n.Load(); got != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", got, tc.wantCalls)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if out["ok"] != true {
					t.Fatalf("out = %v", out)
				}
				return
			}
			var ae *prefect.APIError
			if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
				t.Fatalf("err = %#v, want APIError %d", err, tc.wantStatus)
			}
		})
	}
}

func TestRetryOnConnectionDrop(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	var n atomic.Int32
	f.Handle("GET /flow_runs/{id}", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			// Close the connection without an answer: a transport error.
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			_ = conn.Close()
			return
		}
		prefecttest.Write(w, 200, map[string]any{"id": r.PathValue("id")})
	})
	c := client(t, f, 2*time.Second, 3)
	var out map[string]any
	if err := c.Get(context.Background(), "/flow_runs/abc", &out); err != nil {
		t.Fatalf("err = %v", err)
	}
	if out["id"] != "abc" || n.Load() != 2 {
		t.Fatalf("out = %v after %d calls", out, n.Load())
	}
}

func TestUnreachableIsTransportError(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	c := client(t, f, time.Second, 2)
	f.Close() // nothing listens any more
	err := c.Get(context.Background(), "/health", nil)
	var te *prefect.TransportError
	if !errors.As(err, &te) || te.Timeout {
		t.Fatalf("err = %#v, want a non-timeout TransportError", err)
	}
	if !prefect.Retryable(err) {
		t.Fatal("a connection error must be retryable")
	}
}

func TestTimeoutIsNotRetried(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	var n atomic.Int32
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.Handle("/slow", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := client(t, f, 50*time.Millisecond, 4)
	start := time.Now()
	err := c.Get(context.Background(), "/slow", nil)
	var te *prefect.TransportError
	if !errors.As(err, &te) || !te.Timeout {
		t.Fatalf("err = %#v, want a timeout TransportError", err)
	}
	if n.Load() != 1 {
		t.Fatalf("a timed-out call was retried: %d calls", n.Load())
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	var n atomic.Int32
	f.Handle("/limited", func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			prefecttest.Write(w, 429, map[string]any{"detail": "slow down"})
			return
		}
		prefecttest.Write(w, 200, true)
	})
	c := client(t, f, 2*time.Second, 3)
	start := time.Now()
	if err := c.Get(context.Background(), "/limited", nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("retried after %v, want Retry-After's 1s", d)
	}
}

func TestRetryAfterAsAnHTTPDateIsHonoured(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	var n atomic.Int32
	f.Handle("/limited", func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
			prefecttest.Write(w, 503, map[string]any{"detail": "busy"})
			return
		}
		prefecttest.Write(w, 200, true)
	})
	c := client(t, f, 2*time.Second, 3)
	start := time.Now()
	if err := c.Get(context.Background(), "/limited", nil); err != nil {
		t.Fatal(err)
	}
	// The date has whole seconds: at least one of the two remains.
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("retried after %v, want the Retry-After date (1-2 s away)", d)
	}
}

func TestCancelStopsBackoff(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	f.JSON("/down", 503, map[string]any{"exception_message": "Service Unavailable"})
	u, _ := url.Parse(f.URL + "/api")
	c := prefect.New(prefect.Config{BaseURL: u, Timeout: time.Second,
		Retry: prefect.RetryPolicy{Attempts: 5, Base: 10 * time.Second, Max: 10 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Get(ctx, "/down", nil)
	if !prefect.IsStatus(err, 503) {
		t.Fatalf("err = %v, want the last 503", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled call waited %v", d)
	}
}

func TestAPIErrorText(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	f.JSON("GET /flow_runs/{id}", 404, map[string]any{"detail": "Flow run not found"})
	f.JSON("POST /block_documents/", 422, map[string]any{
		"exception_message": "Invalid request received.",
		"request_body":      map[string]any{"data": map[string]any{"value": "s3cr3t"}},
	})
	c := client(t, f, time.Second, 2)
	err := c.Get(context.Background(), "/flow_runs/x", nil)
	if !prefect.IsNotFound(err) {
		t.Fatalf("err = %v, want a 404", err)
	}
	var ae *prefect.APIError
	errors.As(err, &ae)
	if ae.Message() != "Flow run not found" {
		t.Fatalf("message = %q", ae.Message())
	}
	err = c.Do(context.Background(), http.MethodPost, "/block_documents/", map[string]any{}, nil, false)
	if !errors.As(err, &ae) || ae.Message() != "Invalid request received." {
		t.Fatalf("err = %v", err)
	}
	if s := err.Error(); strings.Contains(s, "s3cr3t") {
		t.Fatalf("error text leaks the request body: %s", s)
	}
}

func TestBodiesAndAuth(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	var auth atomic.Value
	f.Handle("GET /raw", func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"b":1,"a":0.0}`))
	})
	f.Handle("DELETE /thing", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	f.Handle("GET /bad", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("not json")) })
	u, _ := url.Parse(f.URL + "/api")

	c := prefect.New(prefect.Config{BaseURL: u, APIKey: "k1"})
	var raw json.RawMessage
	if err := c.Get(context.Background(), "/raw", &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"b":1,"a":0.0}` {
		t.Fatalf("raw = %s, want Prefect's bytes untouched", raw)
	}
	if auth.Load() != "Bearer k1" {
		t.Fatalf("auth = %v", auth.Load())
	}
	c = prefect.New(prefect.Config{BaseURL: u, AuthString: "user:pass"})
	if err := c.Get(context.Background(), "/raw", nil); err != nil {
		t.Fatal(err)
	}
	if auth.Load() != "Basic dXNlcjpwYXNz" {
		t.Fatalf("auth = %v", auth.Load())
	}
	out := map[string]any{"kept": true}
	if err := c.Do(context.Background(), http.MethodDelete, "/thing", nil, &out, false); err != nil || out["kept"] != true {
		t.Fatalf("204: err = %v, out = %v", err, out)
	}
	var v map[string]any
	if err := c.Get(context.Background(), "/bad", &v); err == nil {
		t.Fatal("invalid JSON must be an error")
	}
}

// rowsServer serves n rows {"i": k} through a /filter endpoint honouring
// limit (≤ 200, as Prefect) and offset.
func rowsServer(t *testing.T, n int) *prefecttest.Server {
	f := prefecttest.New(t)
	f.Handle("POST /things/filter", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Limit  *int `json:"limit"`
			Offset int  `json:"offset"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		limit := prefect.PageSize
		if body.Limit != nil {
			limit = *body.Limit
		}
		if limit > prefect.PageSize {
			prefecttest.Write(w, 422, map[string]any{"detail": "Invalid limit: must be less than or equal to 200."})
			return
		}
		rows := []map[string]int{}
		for i := body.Offset; i < n && len(rows) < limit; i++ {
			rows = append(rows, map[string]int{"i": i})
		}
		prefecttest.Write(w, 200, rows)
	})
	return f
}

func TestFilterAllPaging(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		rows, limit int
		offset      int
		want        int
		wantPages   []string // "limit/offset" of each call
	}{
		{"limit 0 reads every page", 450, 0, 0, 450, []string{"200/0", "200/200", "200/400"}},
		{"an exact multiple of 200 needs one empty page", 400, 0, 0, 400, []string{"200/0", "200/200", "200/400"}},
		{"limit above 200 is paged, not rejected", 450, 250, 0, 250, []string{"200/0", "50/200"}},
		{"limit below 200 is one call", 450, 30, 0, 30, []string{"30/0"}},
		{"the starting offset is honoured", 450, 0, 300, 150, []string{"200/300"}},
		{"no rows", 0, 0, 0, 0, []string{"200/0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := rowsServer(t, tc.rows)
			c := client(t, f, 2*time.Second, 2)
			body := map[string]any{"sort": "X"}
			if tc.offset > 0 {
				body["offset"] = tc.offset
			}
			rows, err := c.FilterAll(context.Background(), "/things/filter", body, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tc.want {
				t.Fatalf("rows = %d, want %d", len(rows), tc.want)
			}
			for k, r := range rows {
				var v struct{ I int }
				_ = json.Unmarshal(r, &v)
				if v.I != tc.offset+k {
					t.Fatalf("row %d = %s, want i=%d (order kept)", k, r, tc.offset+k)
				}
			}
			var pages []string
			for _, call := range f.CallsTo("POST", "/things/filter") {
				b := call.JSON(t)
				if b["sort"] != "X" {
					t.Fatalf("filter body lost its keys: %v", b)
				}
				pages = append(pages, fmt.Sprint(b["limit"])+"/"+strconv.Itoa(int(b["offset"].(float64))))
			}
			if fmt.Sprint(pages) != fmt.Sprint(tc.wantPages) {
				t.Fatalf("pages = %v, want %v", pages, tc.wantPages)
			}
			if _, ok := body["limit"]; ok {
				t.Fatal("FilterAll mutated the caller's body")
			}
		})
	}
}

func TestFilterAllStopsOnError(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	f.JSON("POST /things/filter", 422, map[string]any{"detail": "bad filter"})
	c := client(t, f, time.Second, 3)
	_, err := c.FilterAll(context.Background(), "/things/filter", map[string]any{}, 0)
	if !prefect.IsStatus(err, 422) || len(f.Calls()) != 1 {
		t.Fatalf("err = %v after %d calls", err, len(f.Calls()))
	}
}

func TestNoWaitPastTheDeadline(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	f.Handle("/limited", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "5")
		prefecttest.Write(w, 429, map[string]any{"detail": "slow down"})
	})
	c := client(t, f, 2*time.Second, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := c.Get(ctx, "/limited", nil)
	if !prefect.IsStatus(err, 429) {
		t.Fatalf("err = %v, want the 429", err)
	}
	// The retry could only start after the caller's deadline: give up now
	// rather than sleep until the deadline.
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("waited %v for a retry that could never be made", d)
	}
}

func TestCancelWithoutDeadlineStopsBackoff(t *testing.T) {
	t.Parallel()
	f := prefecttest.New(t)
	var n atomic.Int32
	f.Handle("/down", func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		prefecttest.Write(w, 503, map[string]any{"exception_message": "Service Unavailable"})
	})
	u, _ := url.Parse(f.URL + "/api")
	c := prefect.New(prefect.Config{BaseURL: u, Timeout: time.Second,
		Retry: prefect.RetryPolicy{Attempts: 5, Base: 10 * time.Second, Max: 10 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := c.Get(ctx, "/down", nil)
	if !prefect.IsStatus(err, 503) {
		t.Fatalf("err = %v, want the last 503", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled call waited %v", d)
	}
	if n.Load() != 1 {
		t.Fatalf("%d calls after the cancel, want 1", n.Load())
	}
}
