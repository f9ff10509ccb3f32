package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

const (
	relayKey = "inbound-secret"
	relayRun = "3b55ee18-7511-4ede-abba-ad866ebf982c"
)

type relayRig struct {
	h    http.Handler
	insp *asynq.Inspector
	reg  *prometheus.Registry
	rdb  redis.UniversalClient
}

func newRelayRig(t *testing.T, mutate func(*config.Config)) *relayRig {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"RELAY_INBOUND_KEY": relayKey, "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "dj", "ADMIN_TOKEN": "admin"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(&cfg)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	reg := prometheus.NewRegistry()
	api := relay.NewAPI(cfg, rdb, log, reg)
	return &relayRig{
		h:    specChecked(t, New(Deps{Config: cfg, Log: log, Relay: api, Metrics: NewMetrics(prometheus.NewRegistry())})),
		insp: asynq.NewInspectorFromRedisClient(rdb),
		reg:  reg,
		rdb:  rdb,
	}
}

func (r *relayRig) post(t *testing.T, path, body string, header ...string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (r *relayRig) queued(t *testing.T) int {
	t.Helper()
	info, err := r.insp.GetQueueInfo(jobs.QueueRelay)
	if err != nil {
		return 0
	}
	return info.Pending + info.Scheduled
}

func TestRelayIngestFormats(t *testing.T) {
	t.Parallel()
	bodies := map[string]string{
		"text":     `{"body": "Flow run glossy_bittern.v2 with id ` + relayRun + ` entered state Completed"}`,
		"flow run": `{"body": {"id": "` + relayRun + `", "name": "r", "state": {"name": "Failed", "type": "FAILED", "timestamp": "2026-11-27T12:00:00Z"}}}`,
		"template": `{"flow_run_id": "` + relayRun + `", "flow_run_name": "r", "state_name": "Running", "state_type": "RUNNING", "state_timestamp": "2026-11-27 12:00:00.5+00:00", "event_id": "e"}`,
		"event": `{"event": "prefect.flow-run.Crashed", "id": "e", "occurred": "2026-11-27T12:00:01Z",
			"resource": {"prefect.resource.id": "prefect.flow-run.` + relayRun + `", "prefect.resource.name": "r"}}`,
	}
	for name, body := range bodies {
		for _, ct := range []string{"", "application/json", "text/plain"} {
			for _, path := range []string{"/webhooks/v1/notification/", "/webhooks/v1/notification"} {
				t.Run(name+" "+ct+" "+path, func(t *testing.T) {
					t.Parallel()
					r := newRelayRig(t, nil)
					hdr := []string{"X-Notification-Key", relayKey}
					if ct != "" {
						hdr = append(hdr, "Content-Type", ct)
					}
					code, resp := r.post(t, path, body, hdr...)
					if code != http.StatusAccepted || !strings.Contains(resp, `"status":"queued"`) {
						t.Fatalf("%d %s", code, resp)
					}
					if n := r.queued(t); n != 1 {
						t.Fatalf("%d tasks queued", n)
					}
				})
			}
		}
	}
}

func TestRelayIngestRefusals(t *testing.T) {
	t.Parallel()
	good := `{"flow_run_id": "` + relayRun + `", "flow_run_name": "r", "state_name": "Completed", "state_timestamp": "2026-11-27T12:00:00Z"}`
	tests := []struct {
		name   string
		body   string
		header []string
		status int
		detail string
		metric string
	}{
		{"no key", good, nil, 401, "X-Notification-Key", "unauthorized"},
		{"wrong key", good, []string{"X-Notification-Key", "nope"}, 401, "X-Notification-Key", "unauthorized"},
		{"garbage", "\x00garbage", []string{"X-Notification-Key", relayKey}, 400, "unparseable notification", "unparseable"},
		{"empty", "", []string{"X-Notification-Key", relayKey}, 400, "empty body", "unparseable"},
		{"truncated", good[:40], []string{"X-Notification-Key", relayKey}, 400, "not valid JSON", "unparseable"},
		{"too large", `{"body": "` + strings.Repeat("x", 1<<20) + `"}`, []string{"X-Notification-Key", relayKey}, 413, "1 MiB", "too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRelayRig(t, nil)
			code, resp := r.post(t, "/webhooks/v1/notification/", tc.body, tc.header...)
			if code != tc.status || !strings.Contains(resp, tc.detail) {
				t.Fatalf("%d %s, want %d with %q", code, resp, tc.status, tc.detail)
			}
			var e struct {
				Detail string `json:"detail"`
			}
			if json.Unmarshal([]byte(resp), &e) != nil || e.Detail == "" {
				t.Fatalf("no JSON detail: %s", resp)
			}
			if n := r.queued(t); n != 0 {
				t.Fatalf("%d tasks queued", n)
			}
			if got := counterValue(t, r.reg, "relay_inbound_total", tc.metric); got != 1 {
				t.Fatalf("relay_inbound_total{result=%q} = %v", tc.metric, got)
			}
		})
	}
	t.Run("relay off (no Django key): 503 naming the variable, nothing queued", func(t *testing.T) {
		t.Parallel()
		r := newRelayRig(t, func(c *config.Config) { c.NotificationKey = "" })
		code, resp := r.post(t, "/webhooks/v1/notification/", good, "X-Notification-Key", relayKey)
		if code != 503 || r.queued(t) != 0 || !strings.Contains(resp, "PREFECT_NOTIFICATIONS_WEBHOOK_KEY") {
			t.Fatalf("%d %s", code, resp)
		}
	})
}

func TestRelayIngestDuplicateAndFilter(t *testing.T) {
	t.Parallel()
	r := newRelayRig(t, func(c *config.Config) { c.RelayStates = []string{"Completed"} })
	body := `{"flow_run_id": "` + relayRun + `", "flow_run_name": "r", "state_name": "Completed", "state_timestamp": "2026-11-27T12:00:00Z"}`
	if code, resp := r.post(t, "/webhooks/v1/notification", body, "X-Notification-Key", relayKey); code != 202 {
		t.Fatalf("%d %s", code, resp)
	}
	code, resp := r.post(t, "/webhooks/v1/notification", body, "X-Notification-Key", relayKey)
	if code != 202 || !strings.Contains(resp, `"status":"duplicate"`) {
		t.Fatalf("%d %s", code, resp)
	}
	running := strings.Replace(body, "Completed", "Running", 1)
	code, resp = r.post(t, "/webhooks/v1/notification", running, "X-Notification-Key", relayKey)
	if code != 200 || !strings.Contains(resp, `"status":"ignored"`) {
		t.Fatalf("%d %s", code, resp)
	}
	if n := r.queued(t); n != 1 {
		t.Fatalf("%d tasks queued", n)
	}
}

func TestRelayDeadLetterAdmin(t *testing.T) {
	t.Parallel()
	r := newRelayRig(t, nil)
	// An archived delivery, as asynq leaves it after the last failure.
	n := relay.Notification{FlowRunID: relayRun, Name: "r", State: "Failed", Timestamp: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), Source: "template"}
	payload, _ := json.Marshal(n)
	client := asynq.NewClientFromRedisClient(r.rdb)
	if _, err := client.Enqueue(asynq.NewTask(relay.TaskType, payload), asynq.Queue(jobs.QueueRelay), asynq.TaskID("dead-1")); err != nil {
		t.Fatal(err)
	}
	if err := r.insp.ArchiveTask(jobs.QueueRelay, "dead-1"); err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) (int, string) {
		req := httptest.NewRequest("GET", path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		r.h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/admin/relay/dead-letters", ""); code != 401 {
		t.Fatalf("without the admin token: %d", code)
	}
	code, body := get("/admin/relay/dead-letters/", "admin")
	if code != 200 || !strings.Contains(body, `"id":"dead-1"`) || !strings.Contains(body, `"webhook_id":"`+relay.WebhookID(n)+`"`) || !strings.Contains(body, `"total":1`) {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := r.post(t, "/admin/relay/dead-letters/nope/replay", "", "Authorization", "Bearer admin"); code != 404 {
		t.Fatalf("unknown id: %d %s", code, body)
	}
	if code, body := r.post(t, "/admin/relay/dead-letters/dead-1/replay", "", "Authorization", "Bearer admin"); code != 200 {
		t.Fatalf("replay: %d %s", code, body)
	}
	if r.queued(t) != 1 {
		t.Fatal("replayed delivery is not back in the queue")
	}
	if code, body := r.post(t, "/admin/relay/dead-letters/replay", "", "Authorization", "Bearer admin"); code != 200 || !strings.Contains(body, `"replayed":0`) {
		t.Fatalf("replay all: %d %s", code, body)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{result=%q}", name, result)
	return 0
}
