package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

func TestRunAsATool(t *testing.T) {
	t.Parallel()
	clitest.RunCases(t, run, []clitest.Case{
		{Name: "--help", Args: []string{"--help"}, WantOut: "-block-name string"},
		{Name: "-h", Args: []string{"-h"}, WantOut: "RELAY_PUBLIC_URL"},
		{Name: "--version", Args: []string{"--version"}, WantOut: "relay-setup "},
		{Name: "unknown flag", Args: []string{"-nope"}, WantCode: 2, WantStderr: "flag provided but not defined: -nope"},
		{Name: "arguments", Args: []string{"https://x/"}, WantCode: 2, WantStderr: "unexpected arguments"},
		{Name: "no url", Env: map[string]string{"RELAY_INBOUND_KEY": "k"}, WantCode: 2, WantStderr: "-url"},
		{Name: "no key", Args: []string{"-url", "http://x/"}, WantCode: 1, WantStderr: "RELAY_INBOUND_KEY"},
	})
}

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	clitest.HelpListsEveryVariable(t, run, config.RelaySetup)
}

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
			err := run(context.Background(), tc.args, clitest.Env(tc.env), &out, &errOut)
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
		clitest.Env(map[string]string{"PREFECT_API_URL": pf.URL + "/api", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k",
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
		clitest.Env(map[string]string{"PREFECT_API_URL": pf.URL + "/api", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k"}), &out, &errOut)
	if err != nil {
		t.Fatalf("%v %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), `"recorded_in_redis": false`) || !strings.Contains(errOut.String(), "RELAY_RECONCILE_INTERVAL") {
		t.Fatalf("stdout %s stderr %s", out.String(), errOut.String())
	}
}
