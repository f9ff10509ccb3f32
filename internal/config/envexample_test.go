package config

import (
	"bufio"
	"encoding/base64"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exampleEntry is one NAME=value line of .env.example; commented lines
// document a default.
type exampleEntry struct {
	value     string
	commented bool
}

var exampleLine = regexp.MustCompile(`^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$`)

func readEnvExample(t *testing.T, path string) map[string]exampleEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]exampleEntry{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := exampleLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		if _, dup := out[m[2]]; dup {
			t.Errorf(".env.example: %s is listed twice", m[2])
		}
		out[m[2]] = exampleEntry{value: m[3], commented: m[1] != ""}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// variablesRead returns every variable Load asks for, from an empty
// environment and from one with Redis and the relay configured (so a
// variable read only in some modes is seen too).
func variablesRead(t *testing.T) []string {
	t.Helper()
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	seen := map[string]bool{}
	for _, set := range []map[string]string{
		nil,
		{"REDIS_URL": "redis://127.0.0.1:6379/0", "JOB_ENCRYPTION_KEY": key, "PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k"},
	} {
		if _, err := Load(func(k string) string { seen[k] = true; return set[k] }); err != nil {
			t.Fatalf("Load(%v): %v", set, err)
		}
	}
	names := make([]string, 0, len(seen))
	for k := range seen {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// .env.example is what operators copy (docker compose passes it to every
// container): it must name every variable Load reads, and nothing unknown.
func TestEnvExampleListsEveryVariable(t *testing.T) {
	t.Parallel()
	example := readEnvExample(t, "../../.env.example")
	read := variablesRead(t)
	for _, name := range read {
		if _, ok := example[name]; !ok {
			t.Errorf(".env.example does not list %s (config reads it)", name)
		}
	}
	// Names that are not config's, and where each one is read instead. A
	// compose variable must be used with the default .env.example documents.
	for name, e := range example {
		if slices.Contains(read, name) {
			continue
		}
		var file, needle string
		switch name {
		case "RELAY_PUBLIC_URL":
			file, needle = "../../cmd/relay-setup/main.go", `"RELAY_PUBLIC_URL"`
		case "PROXY_BIND_ADDR", "PROXY_PORT", "PREFECT_PORT":
			file, needle = "../../docker-compose.yml", "${"+name+":-"+e.value+"}"
		default:
			t.Errorf(".env.example lists %s, which nothing reads", name)
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), needle) {
			t.Errorf(".env.example lists %s=%s, but %s has no %s", name, e.value, file, needle)
		}
	}
}

// setChangesBehaviour are the variables whose being set at all means
// something beyond their value; .env.example says so next to them.
var setChangesBehaviour = map[string]string{
	"RELAY_RECONCILE_INTERVAL": "set, the reconciler runs before relay-setup has made the relay Django's path",
}

// A commented line documents the default: setting every commented value must
// give exactly the configuration of setting none of them.
func TestEnvExampleDefaultsAreTheDefaults(t *testing.T) {
	t.Parallel()
	example := readEnvExample(t, "../../.env.example")
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	base := map[string]string{"JOB_ENCRYPTION_KEY": key}
	withDefaults := map[string]string{"JOB_ENCRYPTION_KEY": key}
	for name, e := range example {
		if _, special := setChangesBehaviour[name]; e.commented && !special {
			withDefaults[name] = e.value
		}
	}
	want, err := Load(env(base))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(env(withDefaults))
	if err != nil {
		t.Fatalf("the commented defaults of .env.example do not load: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the commented values of .env.example are not the defaults:\n got  %+v\n want %+v", got, want)
	}
	// The value documented for RELAY_RECONCILE_INTERVAL is still the period
	// used when it is unset.
	if e := example["RELAY_RECONCILE_INTERVAL"]; e.commented {
		c, err := Load(env(map[string]string{"JOB_ENCRYPTION_KEY": key, "RELAY_RECONCILE_INTERVAL": e.value}))
		if err != nil || c.RelayReconcileInterval != want.RelayReconcileInterval {
			t.Errorf(".env.example documents RELAY_RECONCILE_INTERVAL=%s, the default period is %s (%v)", e.value, want.RelayReconcileInterval, err)
		}
	}
}
