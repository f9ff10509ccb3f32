package e2e

// Acceptance checks of how the api behaves when Prefect misbehaves, and of the
// worker process's life cycle.

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// deadPrefectURL is an API root on a loopback port nothing listens on.
func deadPrefectURL(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(port) + "/api"
}

func TestPrefectDownGives502(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	api := testenv.StartAPI(t, map[string]string{
		"PREFECT_API_URL": deadPrefectURL(t), "PREFECT_API_TIMEOUT": "3",
	}).URL
	reads := []struct{ method, path string }{
		{"GET", "/proxy/flow_runs/" + unknownID + "/poll"},
		{"GET", "/proxy/flow_runs/" + unknownID},
		{"GET", "/proxy/deployments/" + unknownID},
		{"POST", "/proxy/deployments/filter"},
		{"GET", "/proxy/flow_runs?deployment_id=" + unknownID},
		{"GET", "/proxy/flow_runs/logs/" + unknownID},
		{"GET", "/proxy/flow_runs/graph/" + unknownID},
		{"GET", "/proxy/blocks/secret/anything"},
		{"GET", "/proxy/blocks/airbyte/server/anything"},
	}
	for _, rd := range reads {
		t.Run(rd.method+" "+rd.path, func(t *testing.T) {
			var body any
			if rd.method == "POST" {
				body = map[string]any{"org_slug": "x", "deployment_ids": []string{unknownID}}
			}
			r := send(t, rd.method, api+rd.path, body)
			if r.Status != http.StatusBadGateway {
				t.Fatalf("status %d, want 502; body %s", r.Status, r.Body)
			}
			if d := r.detail(t); d == "" {
				t.Errorf("empty detail")
			}
			if r.Elapsed > timeout {
				t.Errorf("answered after %s, more than PREFECT_API_TIMEOUT %s", r.Elapsed, timeout)
			}
		})
	}
	t.Run("version answers 200 null", func(t *testing.T) {
		r := send(t, "GET", api+"/proxy/prefect/version", nil).expect(t, 200)
		if strings.TrimSpace(string(r.Body)) != "null" {
			t.Errorf("body = %s", r.Body)
		}
	})
}

func TestPrefectHangingGives504(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	api := testenv.StartAPI(t, map[string]string{
		"PREFECT_API_URL": "http://" + l.Addr().String() + "/api", "PREFECT_API_TIMEOUT": "1",
	}).URL
	r := send(t, "GET", api+"/proxy/flow_runs/"+unknownID+"/poll", nil)
	if r.Status != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504; body %s", r.Status, r.Body)
	}
	r.detail(t)
	// A timed-out call is not retried, and a read as a whole is bounded by
	// PREFECT_API_TIMEOUT (1 s here).
	if r.Elapsed > 3*time.Second {
		t.Errorf("answered after %s", r.Elapsed)
	}
}

func TestPrefect503IsRetried(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	run := p.CreateFlowRunIn(t, dep.ID, "COMPLETED", "")

	// A reverse proxy in front of the real Prefect that answers the first two
	// requests for this run with SQLite's "locked" 503.
	target, _ := url.Parse(strings.TrimSuffix(p.URL, "/api"))
	rp := httputil.NewSingleHostReverseProxy(target)
	var failed, seen atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, run.ID) {
			seen.Add(1)
			if failed.Load() < 2 {
				failed.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"exception_message":"Service Unavailable"}`))
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	api := testenv.StartAPI(t, map[string]string{"PREFECT_API_URL": front.URL + "/api"}).URL
	r := send(t, "GET", api+"/proxy/flow_runs/"+run.ID+"/poll", nil).expect(t, 200).object(t)
	if r["id"] != run.ID || r["state_type"] != "COMPLETED" {
		t.Errorf("poll = %v", r)
	}
	if failed.Load() != 2 || seen.Load() < 3 {
		t.Errorf("503s served %d, requests seen %d; want 2 and at least 3", failed.Load(), seen.Load())
	}
}

func TestWorkerProcessLifecycle(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Redis(t)
	w := testenv.StartWorker(t, map[string]string{
		"REDIS_URL": redisURL, "JOB_ENCRYPTION_KEY": testJobKey,
		// The worker needs no Prefect to start; point it nowhere useful.
		"PREFECT_API_URL": deadPrefectURL(t), "RELAY_RECONCILE_INTERVAL": "0",
	})
	send(t, "GET", w.URL+"/livez", nil).expect(t, 200)
	send(t, "GET", w.URL+"/readyz", nil).expect(t, 200)
	if err := w.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !w.WaitExit(20 * time.Second) {
		t.Fatalf("worker still running 20 s after SIGTERM")
	}
	if err := w.ExitErr(); err != nil {
		t.Errorf("worker exited with %v; output:\n%s", err, w.Logs())
	}
}

func TestWorkerWithoutRedisURLRefusesToStart(t *testing.T) {
	t.Parallel()
	p, err := testenv.StartWorkerProcess(map[string]string{"PREFECT_API_URL": deadPrefectURL(t)})
	if err == nil {
		p.Stop(5 * time.Second)
		t.Fatalf("worker started without REDIS_URL")
	}
	if !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("error does not name REDIS_URL: %v", err)
	}
}

func TestAPIWithRealRedisServesReadsAndReadyz(t *testing.T) {
	t.Parallel()
	p := testenv.Prefect(t)
	redis := testenv.RedisFull(t)
	proc := testenv.StartAPI(t, map[string]string{
		"PREFECT_API_URL": p.URL, "REDIS_URL": redis.URL, "JOB_ENCRYPTION_KEY": testJobKey,
	})
	api := proc.URL
	send(t, "GET", api+"/readyz", nil).expect(t, 200)
	org := testenv.Unique("org")
	if v := send(t, "GET", api+"/proxy/prefect/version", nil, "x-ddp-org", org).expect(t, 200).value(t); v != p.Version {
		t.Errorf("version = %v", v)
	}
	// x-ddp-org is logged as org on the request's access-log line.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(proc.Logs(), "org="+org) {
		if time.Now().After(deadline) {
			t.Errorf("no access-log line with org=%s in:\n%s", org, proc.Logs())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Redis gone: the api is no longer ready, but reads still answer.
	redis.Stop()
	send(t, "GET", api+"/readyz", nil).expect(t, 503)
	send(t, "GET", api+"/livez", nil).expect(t, 200)
	send(t, "GET", api+"/proxy/prefect/version", nil).expect(t, 200)
}
