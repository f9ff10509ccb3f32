package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestConnectionHygiene runs the api binary on a real Redis with short
// limits: PREFECT_API_TIMEOUT=1s gives an ordinary request 6 s (the api adds
// 5 s to answer), HTTP_IDLE_TIMEOUT=2s. A body trickled byte by byte and an
// idle keep-alive connection are closed by the server; a synchronous write
// and a long-poll that wait well past the request limit still answer. No
// worker runs, so jobs stay queued for the whole wait.
func TestConnectionHygiene(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts redis-server and the api")
	}
	const (
		requestLimit = 6 * time.Second // PREFECT_API_TIMEOUT + the api's grace
		longWait     = 2 * requestLimit
		closedWithin = time.Minute // the bar is 2 minutes; the limits here are seconds
	)
	env := map[string]string{
		"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_API_TIMEOUT": "1s",
		"REDIS_URL": testenv.Redis(t), "JOB_ENCRYPTION_KEY": testJobKey,
		"HTTP_IDLE_TIMEOUT": "2s", "JOB_WAIT_TIMEOUT": longWait.String(), "LOG_LEVEL": "info",
	}
	api := testenv.StartAPI(t, env)
	// The worker's ops port, on a Redis of its own so that it runs none of
	// the api's jobs.
	wenv := map[string]string{}
	for k, v := range env {
		wenv[k] = v
	}
	wenv["REDIS_URL"] = testenv.Redis(t)
	worker := testenv.StartWorker(t, wenv)
	deployment := "8c4f0c1e-3a6e-4f8e-9d43-0d6f3f7a2b11"

	t.Run("a trickled body is cut off", func(t *testing.T) {
		t.Parallel()
		conn := dial(t, api.URL)
		fmt.Fprintf(conn, "POST /proxy/deployments/%s/flow_run HTTP/1.1\r\nHost: api\r\n"+
			"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", deployment)
		// One byte every 200 ms: the body would take 200 s to arrive.
		stop := make(chan struct{})
		sent := make(chan int, 1)
		go func() {
			n := 1
			defer func() { sent <- n }()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for n < 1000 {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
				n++
			}
		}()
		closed, waited := waitClosed(conn, closedWithin)
		close(stop)
		n := <-sent
		if !closed {
			t.Fatalf("connection still open after %s of trickling (%d of 1000 body bytes sent)", waited, n)
		}
		if n >= 1000 {
			t.Fatalf("the whole body arrived (%d bytes): the server did not cut the trickle", n)
		}
		t.Logf("closed after %s, %d of 1000 body bytes sent", waited.Round(100*time.Millisecond), n)
	})

	for name, base := range map[string]string{"api": api.URL, "worker ops port": worker.URL} {
		t.Run("an idle keep-alive connection is closed: "+name, func(t *testing.T) {
			t.Parallel()
			conn := dial(t, base)
			fmt.Fprint(conn, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Close {
				t.Fatalf("GET /livez: %d, close=%t; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
			}
			if closed, waited := waitClosedReader(conn, br, closedWithin); !closed {
				t.Fatalf("idle connection still open after %s", waited)
			}
		})
	}

	t.Run("oversized headers are refused", func(t *testing.T) {
		t.Parallel()
		r := send(t, "GET", api.URL+"/livez", nil, "X-Padding", strings.Repeat("a", 200<<10))
		if r.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("200 KB of headers: %d, want 431", r.Status)
		}
	})

	t.Run("a synchronous write waits past the request limit and answers", func(t *testing.T) {
		t.Parallel()
		r := send(t, "POST", api.URL+"/proxy/deployments/"+deployment+"/flow_run", map[string]any{})
		// No worker: the job is still queued when JOB_WAIT_TIMEOUT runs out.
		if r.Status != http.StatusGatewayTimeout || !strings.Contains(string(r.Body), `"job_id"`) {
			t.Fatalf("%d %s; want the 504 with the job id", r.Status, r.Body)
		}
		if r.Elapsed < longWait {
			t.Fatalf("answered after %s, before JOB_WAIT_TIMEOUT (%s)", r.Elapsed, longWait)
		}
	})

	t.Run("a long-poll waits past the request limit and answers", func(t *testing.T) {
		t.Parallel()
		r := send(t, "POST", api.URL+"/proxy/deployments/"+deployment+"/flow_run", map[string]any{},
			"Prefer", "respond-async").expect(t, http.StatusAccepted)
		id := str(t, r.object(t), "job_id")
		j := send(t, "GET", api.URL+"/jobs/"+id+"?wait="+longWait.String(), nil).expect(t, http.StatusOK)
		if state := j.object(t)["state"]; state != "queued" {
			t.Fatalf("job state %v, want queued (no worker runs)", state)
		}
		if j.Elapsed < longWait {
			t.Fatalf("answered after %s, before its wait (%s)", j.Elapsed, longWait)
		}
	})
}

func dial(t *testing.T, baseURL string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitClosed reads from conn (discarding whatever the server answers) until
// the server closes it or within passes.
func waitClosed(conn net.Conn, within time.Duration) (bool, time.Duration) {
	return waitClosedReader(conn, conn, within)
}

func waitClosedReader(conn net.Conn, r io.Reader, within time.Duration) (bool, time.Duration) {
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(within))
	_, err := io.Copy(io.Discard, r)
	waited := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, waited
	}
	return true, waited // EOF (io.Copy's nil) or a reset: closed by the server
}
