package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
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

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines are the JSON log lines written so far.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// A write's access-log line names its job; the worker's log lines of that
// job carry the api request's X-Request-Id.
func TestRequestIDFollowsTheWriteIntoTheWorker(t *testing.T) {
	t.Parallel()
	pf := prefecttest.New(t)
	// A refused run: the worker logs the failure (a success logs nothing).
	pf.JSON("POST /deployments/{id}/create_flow_run", 404, map[string]any{"detail": "Deployment not found"})
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	var logs logBuffer
	log := logrus.New()
	log.SetOutput(&logs)
	log.SetFormatter(&logrus.JSONFormatter{})
	cfg := config.Config{JobWaitTimeout: 10 * time.Second, JobRetention: time.Hour, JobMaxAttempts: 2, WorkerConcurrency: 2,
		JobEncryptionKey: bytes.Repeat([]byte{1}, 32)}
	ops := writes.New(proxy.New(pf.Client(), log))
	w, err := worker.New(worker.Deps{Config: cfg, Log: log, Redis: rdb, Registry: prometheus.NewRegistry(),
		Ops: ops.Registry(), ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	jc, err := jobs.NewClient(context.Background(), rdb, jobs.ClientConfig{Key: cfg.JobEncryptionKey, Ops: ops.Registry(),
		MaxAttempts: cfg.JobMaxAttempts, Retention: cfg.JobRetention, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jc.Close)
	api := New(Deps{Config: cfg, Log: log, Metrics: NewMetrics(prometheus.NewRegistry()), Jobs: jc, Ops: ops})

	req := httptest.NewRequest("POST", "/proxy/deployments/"+depID+"/flow_run", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "trace-42")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	jobID := rec.Header().Get("Job-Id")
	if rec.Code != 400 || jobID == "" || rec.Header().Get("X-Request-Id") != "trace-42" {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}

	var access, workerLine map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		access, workerLine = nil, nil
		for _, l := range logs.lines(t) {
			switch {
			case l["msg"] == "request" && l["route"] == "/proxy/deployments/:deployment_id/flow_run":
				access = l
			case l["component"] == "jobs" && l["job_id"] == jobID:
				workerLine = l
			}
		}
		if access != nil && workerLine != nil {
			break
		}
	}
	if access == nil || access["job_id"] != jobID || access["request_id"] != "trace-42" {
		t.Errorf("access log line %v: want job_id %s and request_id trace-42", access, jobID)
	}
	if workerLine == nil || workerLine["request_id"] != "trace-42" {
		t.Errorf("worker log line of job %s: %v, want request_id trace-42\nlogs:\n%s", jobID, workerLine, logs.lines(t))
	}
}
