package config

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The table is the whole truth about Load: Load reads every variable of the
// table (but RELAY_PUBLIC_URL, which only relay-setup reads) and no other,
// and a variable set to its table default loads as if unset.
func TestVarsTableIsWhatLoadReads(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	read := map[string]bool{}
	if _, err := Load(func(k string) string {
		mu.Lock()
		defer mu.Unlock()
		read[k] = true
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, v := range Vars() {
		if seen[v.Name] {
			t.Errorf("%s is in the table twice", v.Name)
		}
		seen[v.Name] = true
		if v.Usage == "" || v.For == 0 {
			t.Errorf("%s has no meaning or no program", v.Name)
		}
		if v.Default == "" && v.Note == "" {
			t.Errorf("%s: an empty default needs a note saying what unset means", v.Name)
		}
		if !read[v.Name] && v.Name != "RELAY_PUBLIC_URL" {
			t.Errorf("%s is in the table but Load does not read it", v.Name)
		}
	}
	for k := range read {
		if !seen[k] {
			t.Errorf("Load reads %s, which is not in the table", k)
		}
	}

	unset, err := Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	explicit, err := Load(func(k string) string {
		for _, v := range Vars() {
			if v.Name == k {
				return v.Default
			}
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	unset.JobEncryptionKey, explicit.JobEncryptionKey = nil, nil // random in embedded mode
	// Setting RELAY_RECONCILE_INTERVAL, even to its default, is the
	// operator's decision that the reconciler runs without waiting for
	// relay-setup: by design the one difference.
	if !explicit.RelayReconcileExplicit || unset.RelayReconcileExplicit {
		t.Errorf("RelayReconcileExplicit: unset %v, explicit %v", unset.RelayReconcileExplicit, explicit.RelayReconcileExplicit)
	}
	explicit.RelayReconcileExplicit = false
	if !reflect.DeepEqual(unset, explicit) {
		t.Fatalf("defaults differ from the table:\n unset    %+v\n explicit %+v", unset, explicit)
	}
}

// Each documented default is the value Load uses (spot checks of the typed
// values, so a table entry cannot be right only as a string).
func TestVarsDefaultsAsLoaded(t *testing.T) {
	t.Parallel()
	c, err := Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"LISTEN_ADDR":               c.ListenAddr,
		"WORKER_LISTEN_ADDR":        c.WorkerListenAddr,
		"PREFECT_API_URL":           c.PrefectURL.String(),
		"PREFECT_API_TIMEOUT":       strings.TrimSuffix(c.PrefectTimeout.String(), "s"),
		"JOB_WAIT_TIMEOUT":          c.JobWaitTimeout.String(),
		"JOB_RETENTION":             strings.TrimSuffix(c.JobRetention.String(), "0m0s"),
		"DJANGO_WEBHOOK_URL":        c.DjangoWebhookURL.String(),
		"RELAY_STATES":              strings.Join(c.RelayStates, ","),
		"LOG_LEVEL":                 c.LogLevel,
		"LOG_FORMAT":                c.LogFormat,
		"PREFECT_DEFAULT_WORK_POOL": c.DefaultWorkPool,
	}
	for _, v := range Vars() {
		if g, ok := got[v.Name]; ok && g != v.Default {
			t.Errorf("%s: Load uses %q, the table says %q", v.Name, g, v.Default)
		}
	}
}

func TestPrintVarsListsEachProgramsVariables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p        Program
		want     []string
		wantNone []string
	}{
		{API, []string{"LISTEN_ADDR", ":8085", "PROXY_API_TOKEN", "(none)", "REDIS_URL", "(embedded)"}, []string{"WORKER_LISTEN_ADDR", "RELAY_PUBLIC_URL"}},
		{Worker, []string{"WORKER_LISTEN_ADDR", ":8086", "REDIS_URL", "WORKER_CONCURRENCY"}, []string{"LISTEN_ADDR ", "PROXY_API_TOKEN"}},
		{RelaySetup, []string{"PREFECT_API_URL", "RELAY_INBOUND_KEY", "RELAY_PUBLIC_URL", "RELAY_STATES"}, []string{"REDIS_URL", "LISTEN_ADDR"}},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		PrintVars(&b, tc.p)
		out := b.String()
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("program %d: no %q in\n%s", tc.p, w, out)
			}
		}
		for _, w := range tc.wantNone {
			if slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l)+" ", w) }) {
				t.Errorf("program %d lists %q:\n%s", tc.p, w, out)
			}
		}
	}
}
