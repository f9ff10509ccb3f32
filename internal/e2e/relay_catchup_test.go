package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestRelayCatchUpAfterDjangoOutage is issue 7's "fast catch-up" bar: Django
// down 60 s with 1 000 notifications queued, on the production retry
// schedule's first steps (5 s, 30 s, 2 min: after 60 s every delivery waits
// for its 2 min step) → all delivered exactly once within 20 s of Django's
// return. An api and two
// workers on a real Redis; no Prefect is needed (the notifications are
// complete).
func TestRelayCatchUpAfterDjangoOutage(t *testing.T) {
	t.Parallel()
	const (
		runs   = 500 // two states each: Running, Completed
		outage = 60 * time.Second
	)
	dj := testenv.NewDjango(t, relayDjangoKey)
	var down atomic.Bool
	down.Store(true)
	dj.RespondWith(func(int) int {
		if down.Load() {
			return 503
		}
		return 0
	})
	inKey := testenv.Unique("inbound")
	env := map[string]string{
		"REDIS_URL":                         testenv.Redis(t),
		"JOB_ENCRYPTION_KEY":                testJobKey,
		"PREFECT_API_URL":                   "http://127.0.0.1:9/api",
		"RELAY_INBOUND_KEY":                 inKey,
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": relayDjangoKey,
		"DJANGO_WEBHOOK_URL":                dj.URL,
		"RELAY_RETRY_SCHEDULE":              "5s,30s,2m",
		"RELAY_RECONCILE_INTERVAL":          "0",
		"LOG_LEVEL":                         "info",
	}
	api := testenv.StartAPI(t, env)
	testenv.StartWorker(t, env)
	testenv.StartWorker(t, env)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, runs)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uuid.NewString()
			for j, state := range []string{"Running", "Completed"} {
				ts := start.Add(time.Duration(i)*time.Millisecond + time.Duration(j)*time.Second).UTC().Format(time.RFC3339Nano)
				body := fmt.Sprintf(`{"flow_run_id": %q, "flow_run_name": "run_%d", "state_name": %q, "state_type": %q, "state_timestamp": %q}`,
					id, i, state, strings.ToUpper(state), ts)
				req, _ := http.NewRequest("POST", api.URL+"/webhooks/v1/notification/", strings.NewReader(body))
				req.Header.Set("X-Notification-Key", inKey)
				resp, err := httpClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("ingress answered %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	time.Sleep(outage - time.Since(start))
	if n := len(dj.Accepted()); n != 0 {
		t.Fatalf("Django accepted %d while down", n)
	}
	if age := oldestUndelivered(t, api.URL); age < 30 {
		t.Errorf("relay_oldest_undelivered_age_seconds = %v after %s of outage", age, outage)
	}
	down.Store(false)
	back := time.Now()
	// Running may be dropped as stale behind its run's Completed (the store
	// admits states in the order workers reach them); every Completed must
	// arrive, once.
	ok := dj.WaitFor(20*time.Second, func(reqs []testenv.DjangoRequest) bool {
		n := 0
		for _, r := range reqs {
			if r.Accepted && r.State == "Completed" {
				n++
			}
		}
		return n >= runs
	})
	caughtUp := time.Since(back)
	if !ok {
		t.Fatalf("after 20 s of Django back, %d of %d Completed accepted", len(dj.Accepted()), runs)
	}
	time.Sleep(3 * time.Second) // let a duplicate show up
	seen := map[string]bool{}
	for _, r := range dj.Accepted() {
		wid := r.Header.Get("Webhook-Id")
		if seen[wid] {
			t.Errorf("delivered twice: %s %s", r.FlowRunID, r.State)
		}
		seen[wid] = true
	}
	t.Logf("%d notifications, Django down %s: every Completed delivered %s after its return (%d deliveries in all)",
		2*runs, outage, caughtUp.Round(100*time.Millisecond), len(seen))
}

// oldestUndelivered reads relay_oldest_undelivered_age_seconds from the api's
// /metrics.
func oldestUndelivered(t *testing.T, apiURL string) float64 {
	t.Helper()
	r := send(t, "GET", apiURL+"/metrics", nil)
	for _, line := range strings.Split(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, "relay_oldest_undelivered_age_seconds "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("no relay_oldest_undelivered_age_seconds in the api's /metrics (%d)", r.Status)
	return 0
}
