package obs

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPrefectRoute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ path, want string }{
		{"/api/flow_runs/0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10", "/api/flow_runs/:id"},
		{"/api/flow_runs/0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10/set_state", "/api/flow_runs/:id/set_state"},
		{"/api/flow_runs/filter", "/api/flow_runs/filter"},
		{"/api/block_types/slug/secret/block_documents/name/dbt-prod-creds", "/api/block_types/slug/:name/block_documents/name/:name"},
		{"/api/deployments/name/my-flow/my-deployment", "/api/deployments/name/:name/:name"},
		{"/api/health", "/api/health"},
		{"/api/", "/api"},
		{"/api/flow_runs/0b6e1c9e3c594f4a9b0e6a3f1e2d7c10/graph-v2", "/api/flow_runs/:id/graph-v2"},
		{"", "/"},
		{"/api//flow_runs", "/api//flow_runs"},
	} {
		if got := PrefectRoute(tc.path); got != tc.want {
			t.Errorf("PrefectRoute(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestTransportObservesRouteAndStatus(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/missing") {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("{}"))
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	up := NewUpstream(reg)
	if again := NewUpstream(reg); again.hist != up.hist {
		t.Fatal("a second NewUpstream on one registry must reuse the histogram")
	}
	c := &http.Client{Transport: up.Transport(nil, "prefect", PrefectRoute)}
	for _, p := range []string{
		"/api/flow_runs/0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10",
		"/api/flow_runs/1b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10",
		"/api/flows/missing",
	} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// Nothing listens there: the call still counts, as status "error".
	dead := &http.Client{Transport: up.Transport(nil, "django", FixedRoute("/webhooks/v1/notification/"))}
	if _, err := dead.Post("http://127.0.0.1:1/webhooks/v1/notification/?x=1", "text/plain", nil); err == nil {
		t.Fatal("want a connection error")
	}

	for _, tc := range []struct {
		labels []string
		count  int
	}{
		{[]string{"prefect", "/api/flow_runs/:id", "GET", "200"}, 2},
		{[]string{"prefect", "/api/flows/:name", "GET", "404"}, 1},
		{[]string{"django", "/webhooks/v1/notification/", "POST", "error"}, 1},
	} {
		h := up.hist.WithLabelValues(tc.labels...).(prometheus.Histogram)
		if n := histCount(t, h); n != tc.count {
			t.Errorf("%v: %d observations, want %d", tc.labels, n, tc.count)
		}
	}
	if n := testutil.CollectAndCount(up.hist); n != 3 {
		t.Errorf("%d series, want 3 (ids must not become labels)", n)
	}
}

func TestNilUpstreamLeavesTransport(t *testing.T) {
	t.Parallel()
	var up *Upstream
	if got := up.Transport(http.DefaultTransport, "prefect", PrefectRoute); got != http.DefaultTransport {
		t.Fatalf("nil Upstream wrapped the transport: %T", got)
	}
}

// isUUID accepts exactly what the pattern it replaced did.
func TestIsUUIDMatchesThePattern(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	for _, s := range []string{
		"0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10", "0B6E1C9E3C594F4A9B0E6A3F1E2D7C10", "0b6e1c9e3c59-4f4a9b0e-6a3f1e2d7c10",
		"0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c1", "0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c100", "0b6e1c9e--3c59-4f4a-9b0e-6a3f1e2d7c10",
		"0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c1g", "0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10-", "-0b6e1c9e-3c59-4f4a-9b0e-6a3f1e2d7c10",
		"", "flow_runs", "0b6e1c9e", "0b6e1c9e-3c59-4f4a-9b0e6a3f1e2d7c10x",
	} {
		if got, want := isUUID(s), re.MatchString(s); got != want {
			t.Errorf("isUUID(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
