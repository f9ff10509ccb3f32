package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/worker"
	"github.com/DalgoT4D/prefect-proxy-go/internal/writes"
)

// coercionAPI is the api's real handler with the real write operations, a
// worker on miniredis and a fake Prefect: a value travels from the route's
// validation to the Prefect request it becomes.
func coercionAPI(t *testing.T) (*prefecttest.Server, *writesBundle) {
	t.Helper()
	pf := prefecttest.New(t)
	pf.Handle("POST /flow_runs/filter", func(w http.ResponseWriter, _ *http.Request) { prefecttest.Write(w, 200, []any{}) })
	pf.Handle("POST /flow_runs/{id}/set_state", func(w http.ResponseWriter, _ *http.Request) {
		prefecttest.Write(w, 201, map[string]any{"status": "ACCEPT"})
	})
	pf.Handle("POST /deployments/{id}/create_flow_run", func(w http.ResponseWriter, _ *http.Request) {
		prefecttest.Write(w, 201, map[string]any{"id": "fr-1", "name": "brave-otter"})
	})
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg := config.Config{JobWaitTimeout: 20 * time.Second, JobRetention: time.Hour, JobMaxAttempts: 2,
		WorkerConcurrency: 2, JobEncryptionKey: bytes.Repeat([]byte{7}, 32)}
	svc := proxy.New(pf.Client(), log)
	ops := writes.New(svc)
	w, err := worker.New(worker.Deps{Config: cfg, Log: log, Redis: rdb, Registry: prometheus.NewRegistry(),
		Ops: ops.Registry(), ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	jc, err := jobs.NewClient(context.Background(), rdb, jobs.ClientConfig{Key: cfg.JobEncryptionKey,
		Ops: ops.Registry(), MaxAttempts: cfg.JobMaxAttempts, Retention: cfg.JobRetention, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jc.Close)
	api := New(Deps{Config: cfg, Log: log, Proxy: svc, Metrics: NewMetrics(prometheus.NewRegistry()), Jobs: jc, Ops: ops})
	return pf, &writesBundle{api: api, prefect: pf, mr: mr, jobs: jc}
}

// lastCallJSON is the JSON body of the newest call to method+path.
func lastCallJSON(t *testing.T, pf *prefecttest.Server, method, path string) map[string]any {
	t.Helper()
	calls := pf.CallsTo(method, path)
	if len(calls) == 0 {
		t.Fatalf("no call to %s %s", method, path)
	}
	return calls[len(calls)-1].JSON(t)
}

// issue is the type and message of a 422's only entry, "" when the answer
// is not a 422.
func issue(t *testing.T, r wrResp) string {
	t.Helper()
	if r.status != http.StatusUnprocessableEntity {
		return ""
	}
	var body struct {
		Detail []struct{ Type, Msg string }
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || len(body.Detail) != 1 {
		t.Fatalf("not a one-entry 422: %s", r.body)
	}
	return body.Detail[0].Type + ": " + body.Detail[0].Msg
}

// TestReadAndWriteRoutesCoerceAlike sends every int and datetime input
// through a read route (POST /proxy/flow_runs/late, whose limit is an int and
// before_start_time a datetime) and a write route (retry's minutes,
// schedule's scheduledTime): both accept the same inputs, coerce them to the
// same value, and reject the rest with the same 422 entry.
func TestReadAndWriteRoutesCoerceAlike(t *testing.T) {
	t.Parallel()
	pf, b := coercionAPI(t)

	const intErr = "int_parsing: Input should be a valid integer, unable to parse string as an integer"
	const fracErr = "int_from_float: Input should be a valid integer, got a number with a fractional part"
	ints := []struct {
		name, in string
		want     int    // the coerced value
		err      string // or the 422 entry
	}{
		{"json int", `5`, 5, ""},
		{"integral float", `5.0`, 5, ""},
		{"true is one", `true`, 1, ""},
		{"numeric string", `"5"`, 5, ""},
		{"padded string", `" 5 "`, 5, ""},
		{"signed string", `"+5"`, 5, ""},
		{"underscores", `"1_0"`, 10, ""},
		{"string with zero fraction", `"5.0"`, 5, ""},
		{"fractional float", `5.5`, 0, fracErr},
		{"fractional string", `"5.5"`, 0, intErr},
		{"string ending in a dot", `"5."`, 0, intErr},
		{"word", `"five"`, 0, intErr},
		{"null", `null`, 0, "int_type: Input should be a valid integer"},
		{"list", `[5]`, 0, "int_type: Input should be a valid integer"},
	}
	for i, tc := range ints {
		run := fmt.Sprintf("0b6a1d2e-0000-4000-8000-%012d", i)
		read := b.do(t, "POST", "/proxy/flow_runs/late", `{"limit":`+tc.in+`}`)
		before := time.Now().UTC()
		write := b.do(t, "POST", "/proxy/flow_runs/"+run+"/retry", `{"minutes":`+tc.in+`}`)
		after := time.Now().UTC()
		if got := issue(t, read); got != tc.err {
			t.Errorf("%s: read route: got %d %q, want %q", tc.name, read.status, read.body, tc.err)
		}
		if got := issue(t, write); got != tc.err {
			t.Errorf("%s: write route: got %d %q, want %q", tc.name, write.status, write.body, tc.err)
		}
		if tc.err != "" {
			continue
		}
		if read.status != 200 || write.status != 200 {
			t.Fatalf("%s: read %d %s, write %d %s", tc.name, read.status, read.body, write.status, write.body)
		}
		if got := lastCallJSON(t, pf, "POST", "/flow_runs/filter")["limit"]; got != float64(tc.want) {
			t.Errorf("%s: read route sent limit %v, want %d", tc.name, got, tc.want)
		}
		st := lastCallJSON(t, pf, "POST", "/flow_runs/"+run+"/set_state")["state"].(map[string]any)
		at, _ := time.Parse(time.RFC3339Nano, st["state_details"].(map[string]any)["scheduled_time"].(string))
		shift := time.Duration(tc.want) * time.Minute
		if at.Before(before.Add(shift)) || at.After(after.Add(shift)) {
			t.Errorf("%s: write route scheduled the retry at %v, want %v after the request", tc.name, at, shift)
		}
	}

	const dateErr = "datetime_from_date_parsing: Input should be a valid datetime or date, "
	times := []struct {
		name, in string
		want     string // Prefect's timestamp
		err      string // or the 422 entry
	}{
		{"offset", `"2026-01-02T03:04:05+05:30"`, "2026-01-01T21:34:05Z", ""},
		{"space and Z", `"2026-01-02 03:04:05.5Z"`, "2026-01-02T03:04:05.5Z", ""},
		{"naive minutes are UTC", `"2026-01-02T03:04"`, "2026-01-02T03:04:00Z", ""},
		{"date is midnight", `"2026-01-02"`, "2026-01-02T00:00:00Z", ""},
		{"unix seconds", `1700000000`, "2023-11-14T22:13:20Z", ""},
		{"unix seconds as a string", `"1700000000"`, "2023-11-14T22:13:20Z", ""},
		{"unix milliseconds", `1700000000123`, "2023-11-14T22:13:20.123Z", ""},
		{"fractional seconds as a string", `"1700000000.5"`, "2023-11-14T22:13:20.5Z", ""},
		{"word", `"yesterday"`, "", dateErr + "input is too short"},
		{"month 13", `"2026-13-01"`, "", dateErr + "month value is outside expected range of 1-12"},
		{"slashes", `"2026/01/02"`, "", dateErr + "invalid date separator, expected `-`"},
		{"hour 25", `"2026-01-02T25:00"`, "", dateErr + "unexpected extra characters at the end of the input"},
		{"bool", `true`, "", "datetime_type: Input should be a valid datetime"},
		{"object", `{}`, "", "datetime_type: Input should be a valid datetime"},
	}
	for i, tc := range times {
		dep := fmt.Sprintf("0b6a1d2e-0000-4000-8000-1%011d", i)
		read := b.do(t, "POST", "/proxy/flow_runs/late", `{"before_start_time":`+tc.in+`}`)
		write := b.do(t, "POST", "/proxy/deployments/"+dep+"/flow_run/schedule", `{"runParams":{},"scheduledTime":`+tc.in+`}`)
		if got := issue(t, read); got != tc.err {
			t.Errorf("%s: read route: got %d %q, want %q", tc.name, read.status, read.body, tc.err)
		}
		if got := issue(t, write); got != tc.err {
			t.Errorf("%s: write route: got %d %q, want %q", tc.name, write.status, write.body, tc.err)
		}
		if tc.err != "" {
			continue
		}
		if read.status != 200 || write.status != 200 {
			t.Fatalf("%s: read %d %s, write %d %s", tc.name, read.status, read.body, write.status, write.body)
		}
		fr := lastCallJSON(t, pf, "POST", "/flow_runs/filter")["flow_runs"].(map[string]any)
		if got := fr["expected_start_time"].(map[string]any)["before_"]; got != tc.want {
			t.Errorf("%s: read route sent %v, want %s", tc.name, got, tc.want)
		}
		st := lastCallJSON(t, pf, "POST", "/deployments/"+dep+"/create_flow_run")["state"].(map[string]any)
		if got := st["state_details"].(map[string]any)["scheduled_time"]; got != tc.want {
			t.Errorf("%s: write route sent %v, want %s", tc.name, got, tc.want)
		}
	}
}
