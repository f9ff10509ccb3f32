package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
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
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-url", "https://proxy/webhooks/v1/notification/", "-tags", "a, b"},
		env(map[string]string{"PREFECT_API_URL": pf.URL + "/api", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k",
			// the workers' environment: setup must not need their JOB_ENCRYPTION_KEY
			"REDIS_URL": "redis://redis:6379/0"}), &out, &errOut)
	if err != nil {
		t.Fatalf("%v %s", err, errOut.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res["block"] != "created" || res["automation"] != "created" {
		t.Fatalf("output %s", out.String())
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
