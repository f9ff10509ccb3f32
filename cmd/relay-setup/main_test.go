package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

func TestRunAsATool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		args                []string
		env                 map[string]string
		wantCode            int
		wantOut, wantStderr string
	}{
		{"--help", []string{"--help"}, nil, 0, "-block-name string", ""},
		{"-h", []string{"-h"}, nil, 0, "RELAY_PUBLIC_URL", ""},
		{"--version", []string{"--version"}, nil, 0, "relay-setup ", ""},
		{"unknown flag", []string{"-nope"}, nil, 2, "", "flag provided but not defined: -nope"},
		{"arguments", []string{"https://x/"}, nil, 2, "", "unexpected arguments"},
		{"no url", nil, map[string]string{"RELAY_INBOUND_KEY": "k"}, 2, "", "-url"},
		{"no key", []string{"-url", "http://x/"}, nil, 1, "", "RELAY_INBOUND_KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, env(tc.env), &out, &errOut)
			code := cli.Code(err, &errOut)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errOut.String(), tc.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errOut.String(),
					tc.wantCode, tc.wantOut, tc.wantStderr)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, env(nil), &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Vars() {
		if v.For&config.RelaySetup == 0 {
			continue
		}
		if !strings.Contains(out.String(), v.Name) {
			t.Errorf("--help does not list %s", v.Name)
		}
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestRunRefusesIncompleteInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no url", nil, map[string]string{"RELAY_INBOUND_KEY": "k"}, "-url"},
		{"no key", []string{"-url", "http://x/"}, nil, "RELAY_INBOUND_KEY"},
		{"bad config", []string{"-url", "http://x/"}, map[string]string{"RELAY_INBOUND_KEY": "k", "PREFECT_API_URL": "ftp://x"}, "PREFECT_API_URL"},
		// Checked before Prefect is touched: a switch that cannot be recorded would leave the reconciler off.
		{"unreachable redis", []string{"-url", "http://x/"}, map[string]string{"RELAY_INBOUND_KEY": "k", "PREFECT_API_URL": "http://127.0.0.1:1/api", "REDIS_URL": "redis://127.0.0.1:1/0"}, "REDIS_URL not reachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, env(tc.env), &out, &errOut)
			if err == nil || !strings.Contains(err.Error()+errOut.String(), tc.want) {
				t.Fatalf("err = %v (%s), want %q", err, errOut.String(), tc.want)
			}
		})
	}
}

func TestRunReportsWhatItDid(t *testing.T) {
	t.Parallel()
	pf := prefecttest.New(t)
	pf.JSON("GET /block_types/slug/webhook", 200, map[string]any{"id": "bt"})
	pf.JSON("POST /block_schemas/filter", 200, []map[string]any{{"id": "bs"}})
	pf.JSON("GET /block_types/slug/webhook/block_documents/name/{name}", 404, map[string]any{"detail": "not found"})
	pf.JSON("POST /block_documents/", 201, map[string]any{"id": "bd"})
	pf.JSON("POST /automations/filter", 200, []any{})
	pf.JSON("POST /automations/", 201, map[string]any{"id": "au"})
	mr := miniredis.RunT(t)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-url", "https://proxy/webhooks/v1/notification/", "-tags", "a, b"},
		env(map[string]string{"PREFECT_API_URL": pf.URL + "/api", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k",
			// the workers' environment: setup must not need their JOB_ENCRYPTION_KEY
			"REDIS_URL": "redis://" + mr.Addr() + "/0"}), &out, &errOut)
	if err != nil {
		t.Fatalf("%v %s", err, errOut.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res["block"] != "created" || res["automation"] != "created" || res["recorded_in_redis"] != true {
		t.Fatalf("output %s", out.String())
	}
	// The switch is recorded where the workers' reconciler looks for it.
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	if rec, ok, err := relay.SetupRecorded(context.Background(), rdb); err != nil || !ok || rec.AutomationID != "au" || rec.URL != "https://proxy/webhooks/v1/notification/" {
		t.Fatalf("record %+v %v %v", rec, ok, err)
	}
	auto := pf.CallsTo("POST", "/automations/")[0].JSON(t)
	related := auto["trigger"].(map[string]any)["match_related"].(map[string]any)
	if ids := related["prefect.resource.id"].([]any); len(ids) != 2 || ids[0] != "prefect.tag.a" || ids[1] != "prefect.tag.b" {
		t.Fatalf("match_related %v", related)
	}
	block := pf.CallsTo("POST", "/block_documents/")[0].JSON(t)
	if h := block["data"].(map[string]any)["headers"].(map[string]any); h["X-Notification-Key"] != "k" {
		t.Fatalf("block headers %v", h)
	}
}

func TestRunWithoutRedisSaysTheReconcilerStaysOff(t *testing.T) {
	t.Parallel()
	pf := prefecttest.New(t)
	pf.JSON("GET /block_types/slug/webhook", 200, map[string]any{"id": "bt"})
	pf.JSON("POST /block_schemas/filter", 200, []map[string]any{{"id": "bs"}})
	pf.JSON("GET /block_types/slug/webhook/block_documents/name/{name}", 404, map[string]any{"detail": "not found"})
	pf.JSON("POST /block_documents/", 201, map[string]any{"id": "bd"})
	pf.JSON("POST /automations/filter", 200, []any{})
	pf.JSON("POST /automations/", 201, map[string]any{"id": "au"})
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-url", "https://proxy/webhooks/v1/notification/"},
		env(map[string]string{"PREFECT_API_URL": pf.URL + "/api", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k"}), &out, &errOut)
	if err != nil {
		t.Fatalf("%v %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), `"recorded_in_redis": false`) || !strings.Contains(errOut.String(), "RELAY_RECONCILE_INTERVAL") {
		t.Fatalf("stdout %s stderr %s", out.String(), errOut.String())
	}
}
