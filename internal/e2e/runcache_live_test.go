package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestRunCacheThroughLiveStream proves the terminal-run cache and the
// event-stream subscriber work together with nothing set by hand: a worker's
// real subscriber on the shared Prefect keeps events:live and drops a run's
// entries on its state events; the api, behind a counting proxy to Prefect,
// serves finished runs from the cache only while that holds. A finished run's
// repeated poll and graph cost 0 Prefect calls and answer the first answer's
// bytes; a state change made in Prefect reaches the cache through the stream,
// and no poll made after the subscriber handled the event answers the old
// state; the subscriber's worker SIGKILLed, every read goes to Prefect again
// once events:live has expired.
func TestRunCacheThroughLiveStream(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: needs a real Prefect server and redis-server")
	}
	p := testenv.Prefect(t)
	red := testenv.RedisFull(t)
	rdb := redisClient(t, red.URL)
	dj := testenv.NewDjango(t, relayDjangoKey)
	count := countPrefect(t, p.URL)
	const settle = time.Second
	env := map[string]string{
		"REDIS_URL": red.URL, "JOB_ENCRYPTION_KEY": testJobKey,
		"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": relayDjangoKey, "DJANGO_WEBHOOK_URL": dj.URL,
		"RELAY_EVENTS": "on", "RELAY_RECONCILE_INTERVAL": "0", "RELAY_RETRY_SCHEDULE": "300ms",
		"RUN_CACHE": "on", "RUN_CACHE_SETTLE": settle.String(), "RUN_CACHE_LOG_GRACE": settle.String(),
		"LOG_LEVEL": "info",
	}
	apiEnv := map[string]string{"PREFECT_API_URL": count.URL}
	workerEnv := map[string]string{"PREFECT_API_URL": p.URL}
	for k, v := range env {
		apiEnv[k], workerEnv[k] = v, v
	}
	api := testenv.StartAPI(t, apiEnv).URL
	worker := testenv.StartWorker(t, workerEnv)
	live := func() string {
		v, _ := rdb.Get(context.Background(), runcache.LiveKey).Result()
		return v
	}
	waitFor(t, 60*time.Second, "the worker's subscriber live on the stream", func() bool { return live() != "" },
		func() string { return lastLines(worker.Logs(), 40) })

	// A finished run (with a task run, so that its graph has a node),
	// finished after the subscriber went live.
	dep := p.CreateDeployment(t, testenv.DeploymentSpec{})
	run := p.CreateFlowRun(t, dep.ID, nil).ID
	p.CreateTaskRun(t, run, "step", "COMPLETED", "")
	p.RunTo(t, run, "COMPLETED", "")
	pollURL, graphURL := api+"/proxy/flow_runs/"+run+"/poll", api+"/proxy/flow_runs/graph/"+run

	t.Run("finished run: repeats cost 0 calls and answer the first bytes", func(t *testing.T) {
		// The stream handled the run's events (the relay delivers after the
		// cache was told) and the graph may be stored (RUN_CACHE_SETTLE).
		waitFor(t, 30*time.Second, "Django told the run completed", func() bool { return dj.WaitForState(0, run, "Completed") },
			func() string { return lastLines(worker.Logs(), 40) })
		end, _ := time.Parse(time.RFC3339Nano, str(t, p.GetFlowRun(t, run), "end_time"))
		time.Sleep(time.Until(end.Add(settle + 200*time.Millisecond)))
		// A reconnect of the stream (a new generation) makes the next read
		// revalidate at Prefect: measure again then, a bounded number of times.
		for attempt := 1; ; attempt++ {
			gen := live()
			first := map[string]string{}
			for _, u := range []string{pollURL, graphURL} {
				first[u] = string(send(t, "GET", u, nil).expect(t, 200).Body)
			}
			count.take()
			for range 10 {
				for _, u := range []string{pollURL, graphURL} {
					if got := string(send(t, "GET", u, nil).expect(t, 200).Body); got != first[u] {
						t.Fatalf("%s: a repeat answered\n%s\nthe first\n%s", u, got, first[u])
					}
				}
			}
			calls, n := count.take()
			if g := live(); g != gen && attempt < 3 {
				t.Logf("the stream reconnected (generation %s → %s) during the measurement; again", gen, g)
				continue
			}
			if n != 0 {
				t.Errorf("10 polls and 10 graph reads of a finished run cost %d Prefect calls %v, want 0", n, calls)
			}
			break
		}
	})

	t.Run("a state change in Prefect reaches the cache through the stream", func(t *testing.T) {
		before := redisMicros(t, rdb)
		set := p.SetFlowRunState(t, run, testenv.State("SCHEDULED", "AwaitingRetry"), true)
		if set["status"] != "ACCEPT" {
			t.Fatalf("set_state AwaitingRetry: %v", set)
		}
		changed := time.Now()
		// Until the subscriber handles the event the cached Completed may
		// be answered; after, never.
		polls := 0
		waitFor(t, 15*time.Second, "the poll showing AwaitingRetry", func() bool {
			handled := invalidatedSince(t, rdb, run, before)
			fr := send(t, "GET", pollURL, nil).expect(t, 200).object(t)
			polls++
			if fr["state_type"] == "SCHEDULED" && fr["state_name"] == "AwaitingRetry" {
				return true
			}
			if handled {
				t.Fatalf("the stream's event was handled, yet the poll answers %v %v", fr["state_type"], fr["state_name"])
			}
			return false
		}, func() string { return lastLines(worker.Logs(), 40) })
		t.Logf("set_state AwaitingRetry seen by the api's poll %s later (%d polls)", time.Since(changed).Round(time.Millisecond), polls)
		// Part 1 showed the Completed poll cached; only the stream's event
		// (nothing else here writes to the run) can have dropped it.
		if !invalidatedSince(t, rdb, run, before) {
			t.Errorf("the poll changed, but the cache was told of no state event since the change")
		}
		count.take()
		for range 3 {
			if fr := send(t, "GET", pollURL, nil).expect(t, 200).object(t); fr["state_type"] != "SCHEDULED" {
				t.Errorf("after the change the poll answers %v", fr["state_type"])
			}
		}
		if calls, n := count.take(); n != 3 {
			t.Errorf("3 polls of a scheduled run cost %d Prefect calls %v, want 3 (never cached)", n, calls)
		}

		// Finished again: cached again once the stream has told the cache.
		p.RunTo(t, run, "COMPLETED", "")
		waitFor(t, 15*time.Second, "Django told the run completed again", func() bool {
			n := 0
			for _, s := range dj.StatesOf(run) {
				if s == "Completed" {
					n++
				}
			}
			return n == 2
		}, func() string { return lastLines(worker.Logs(), 40) })
		first := send(t, "GET", pollURL, nil).expect(t, 200)
		if fr := first.object(t); fr["state_type"] != "COMPLETED" {
			t.Fatalf("after the second completion the poll answers %v", fr["state_type"])
		}
		count.take()
		for range 5 {
			if got := send(t, "GET", pollURL, nil).expect(t, 200).Body; string(got) != string(first.Body) {
				t.Errorf("a repeat answered\n%s\nthe first\n%s", got, first.Body)
			}
		}
		if calls, n := count.take(); n != 0 {
			t.Errorf("5 polls of the run finished again cost %d Prefect calls %v, want 0", n, calls)
		}
	})

	t.Run("subscriber's worker SIGKILLed: every read goes to Prefect", func(t *testing.T) {
		send(t, "GET", graphURL, nil).expect(t, 200)
		killed := time.Now()
		worker.Kill()
		waitFor(t, 30*time.Second, "events:live expired", func() bool { return live() == "" }, nil)
		t.Logf("events:live expired %s after the SIGKILL", time.Since(killed).Round(100*time.Millisecond))
		count.take()
		for range 3 {
			send(t, "GET", pollURL, nil).expect(t, 200)
		}
		if calls, n := count.take(); n != 3 {
			t.Errorf("3 polls with no subscriber cost %d Prefect calls %v, want 3", n, calls)
		}
		for range 3 {
			send(t, "GET", graphURL, nil).expect(t, 200)
		}
		if calls, _ := count.take(); calls["GET /api/flow_runs/:id/graph-v2"] != 3 {
			t.Errorf("3 graph reads with no subscriber made Prefect calls %v, want 3 graph reads", calls)
		}
	})
}

// waitFor polls cond until it holds, failing after d with what and, when
// given, more's text.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, more func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if more != nil {
				msg = "\n" + more()
			}
			t.Fatalf("not within %s: %s%s", d, what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// redisMicros is Redis's clock in µs, the clock the cache marks a run's
// last state event with.
func redisMicros(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMicro()
}

// invalidatedSince reports whether the cache was told of a state event of
// run at or after since (µs): its mark of the run's last event.
func invalidatedSince(t *testing.T, rdb redis.UniversalClient, run string, since int64) bool {
	t.Helper()
	v, err := rdb.Get(context.Background(), "runcache:inv:"+run).Result()
	if err == redis.Nil {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	us, err := strconv.ParseInt(v, 10, 64)
	return err == nil && us >= since
}
