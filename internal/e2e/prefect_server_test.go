package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestPrefectAsMakeRunStartsIt starts every supported Prefect release the way
// `make run` does (scripts/prefect-server.sh: all services, the scheduler
// included) and checks what the harness's own server cannot, since it runs
// with the scheduler off: a deployment with a cron schedule gets its runs
// from Prefect's scheduler, and the server's log, from start to stop, has no
// traceback or error. A Prefect whose scheduler fails on every loop (3.6.29
// with SQLAlchemy 2.1) fails here.
func TestPrefectAsMakeRunStartsIt(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: starts real Prefect servers")
	}
	for _, version := range testenv.SupportedPrefectVersions() {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			srv, err := testenv.StartLocalPrefect(version)
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			t.Cleanup(func() {
				if !stopped {
					srv.Stop()
				}
				if t.Failed() {
					t.Logf("--- Prefect %s output ---\n%s", version, lastLines(srv.Logs(), 200))
				}
			})
			if srv.Version != version {
				t.Fatalf("server reports version %q, want %q", srv.Version, version)
			}

			created := time.Now()
			dep := srv.CreateDeployment(t, testenv.DeploymentSpec{Cron: "* * * * *"})
			runs := waitScheduledRuns(t, srv, dep.ID, 3*time.Minute)
			checkCronRuns(t, runs, created)

			srv.Stop()
			stopped = true
			if bad := alarmingLines(srv.Logs()); len(bad) > 0 {
				t.Errorf("Prefect %s logged %d alarming lines, e.g.:\n%s", version, len(bad),
					strings.Join(bad[:min(len(bad), 20)], "\n"))
			}
		})
	}
}

// scheduledRun is what the test reads of a flow run the scheduler created.
type scheduledRun struct {
	ID                string    `json:"id"`
	AutoScheduled     bool      `json:"auto_scheduled"`
	StateType         string    `json:"state_type"`
	ExpectedStartTime time.Time `json:"expected_start_time"`
}

// waitScheduledRuns polls Prefect until the deployment has flow runs, and
// stops early when the server logs an error (a failing scheduler says so on
// its first loop). It is a correctness check: the deadline is generous (the
// scheduler reacts to a new deployment within seconds, and loops every
// minute regardless).
func waitScheduledRuns(t *testing.T, srv *testenv.PrefectServer, depID string, within time.Duration) []scheduledRun {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var runs []scheduledRun
		srv.Do(t, "POST", "/flow_runs/filter", map[string]any{
			"flow_runs": map[string]any{"deployment_id": map[string]any{"any_": []string{depID}}},
			"sort":      "EXPECTED_START_TIME_ASC",
		}, &runs)
		if len(runs) > 0 {
			return runs
		}
		if bad := alarmingLines(srv.Logs()); len(bad) > 0 {
			t.Fatalf("no flow run of the cron deployment %s yet, and Prefect logged:\n%s", depID,
				strings.Join(bad[:min(len(bad), 20)], "\n"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flow run of the cron deployment %s within %s: Prefect's scheduler does not work", depID, within)
		}
		time.Sleep(2 * time.Second)
	}
}

// checkCronRuns checks the runs are the scheduler's, one per minute of
// "* * * * *" from about when the deployment was created.
func checkCronRuns(t *testing.T, runs []scheduledRun, created time.Time) {
	t.Helper()
	if len(runs) < 2 {
		t.Errorf("%d scheduled runs, want the next few minutes' (at least 2)", len(runs))
	}
	seen := map[time.Time]bool{}
	for _, r := range runs {
		at := r.ExpectedStartTime
		if !r.AutoScheduled || r.StateType != "SCHEDULED" {
			t.Errorf("run %s: auto_scheduled=%v state %s, want a SCHEDULED run made by the scheduler", r.ID, r.AutoScheduled, r.StateType)
		}
		if !at.Equal(at.Truncate(time.Minute)) {
			t.Errorf("run %s expected at %s, not on a whole minute", r.ID, at)
		}
		if seen[at] {
			t.Errorf("two runs expected at %s", at)
		}
		seen[at] = true
	}
	if first := runs[0].ExpectedStartTime; first.Before(created.Add(-time.Minute)) || first.After(created.Add(2*time.Minute)) {
		t.Errorf("first run expected at %s; the deployment was created at %s", first, created)
	}
}

// alarming matches what a user must not see in Prefect's log: a Python
// traceback, an exception, or a log record at ERROR or CRITICAL.
var alarming = regexp.MustCompile(`Traceback|Exception|Error:|\| (ERROR|CRITICAL) `)

func alarmingLines(logs string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if alarming.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
