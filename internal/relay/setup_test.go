package relay

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

// fakePrefectAutomations keeps block documents and automations in memory,
// answering with the extra fields Prefect adds (ids, timestamps, trigger id).
func fakePrefectAutomations(t *testing.T) (*prefecttest.Server, *sync.Mutex, map[string]map[string]any, map[string]map[string]any) {
	pf := prefecttest.New(t)
	var mu sync.Mutex
	blocks := map[string]map[string]any{}      // by name
	automations := map[string]map[string]any{} // by id
	pf.JSON("GET /block_types/slug/webhook", 200, map[string]any{"id": "bt-1", "slug": "webhook"})
	pf.JSON("POST /block_schemas/filter", 200, []map[string]any{{"id": "bs-1"}})
	pf.Handle("GET /block_types/slug/webhook/block_documents/name/{name}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := blocks[r.PathValue("name")]; ok {
			prefecttest.Write(w, 200, b)
			return
		}
		prefecttest.Write(w, 404, map[string]any{"detail": "Block document not found"})
	})
	pf.Handle("POST /block_documents/", func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		b["id"] = "bd-" + b["name"].(string)
		mu.Lock()
		blocks[b["name"].(string)] = b
		mu.Unlock()
		prefecttest.Write(w, 201, b)
	})
	pf.Handle("PATCH /block_documents/{id}", func(w http.ResponseWriter, r *http.Request) {
		var p map[string]any
		_ = json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		for _, b := range blocks {
			if b["id"] == r.PathValue("id") {
				b["data"] = p["data"]
			}
		}
		mu.Unlock()
		w.WriteHeader(204)
	})
	pf.Handle("POST /automations/filter", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		out := []map[string]any{}
		for _, a := range automations {
			if strings.Contains(string(body), `"`+a["name"].(string)+`"`) {
				out = append(out, a)
			}
		}
		prefecttest.Write(w, 200, out)
	})
	store := func(id string, r *http.Request) map[string]any {
		var a map[string]any
		_ = json.NewDecoder(r.Body).Decode(&a)
		a["id"], a["created"] = id, "2026-11-27T12:00:00Z"
		a["trigger"].(map[string]any)["id"] = "trigger-" + id
		// Prefect may order the expected events its own way.
		exp := a["trigger"].(map[string]any)["expect"].([]any)
		for i, j := 0, len(exp)-1; i < j; i, j = i+1, j-1 {
			exp[i], exp[j] = exp[j], exp[i]
		}
		mu.Lock()
		automations[id] = a
		mu.Unlock()
		return a
	}
	pf.Handle("POST /automations/", func(w http.ResponseWriter, r *http.Request) {
		prefecttest.Write(w, 201, store("auto-1", r))
	})
	pf.Handle("PUT /automations/{id}", func(w http.ResponseWriter, r *http.Request) {
		store(r.PathValue("id"), r)
		w.WriteHeader(204)
	})
	pf.Handle("PATCH /automations/{id}", func(w http.ResponseWriter, r *http.Request) {
		var p map[string]any
		_ = json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		defer mu.Unlock()
		a, ok := automations[r.PathValue("id")]
		if !ok {
			prefecttest.Write(w, 404, map[string]any{"detail": "Automation not found"})
			return
		}
		a["enabled"] = p["enabled"]
		w.WriteHeader(204)
	})
	return pf, &mu, blocks, automations
}

func TestSetupReplacesTheDirectAutomationBeforeEnablingItsOwn(t *testing.T) {
	t.Parallel()
	pf, mu, _, automations := fakePrefectAutomations(t)
	const old = "Flow Run State Change Notification"
	mu.Lock()
	automations["direct"] = map[string]any{"id": "direct", "name": old, "enabled": true}
	mu.Unlock()
	o := SetupOptions{URL: "https://proxy.example/webhooks/v1/notification/", Key: "k1", States: []string{"Completed"}, Replace: []string{old}}
	res, err := Setup(context.Background(), pf.Client(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Disabled) != 1 || res.Disabled[0] != "direct" || res.Automation != "created" {
		t.Fatalf("%+v", res)
	}
	mu.Lock()
	if automations["direct"]["enabled"] != false {
		t.Errorf("the direct automation is still enabled: %v", automations["direct"])
	}
	mu.Unlock()
	// Disabled first, then created: never both on at once (Django would get every state twice).
	var order []string
	for _, c := range pf.Calls() {
		if c.Method == "PATCH" || c.Method == "POST" && c.Path == "/api/automations/" {
			order = append(order, c.Method)
		}
	}
	if strings.Join(order, ",") != "PATCH,POST" {
		t.Fatalf("calls in order %v, want PATCH then POST", order)
	}
	res, err = Setup(context.Background(), pf.Client(), o)
	if err != nil || len(res.Disabled) != 0 || res.Automation != "unchanged" {
		t.Fatalf("second run: %+v %v", res, err)
	}
}

func TestSetupIsIdempotent(t *testing.T) {
	t.Parallel()
	pf, mu, blocks, automations := fakePrefectAutomations(t)
	ctx := context.Background()
	o := SetupOptions{URL: "https://proxy.example/webhooks/v1/notification/", Key: "k1", States: []string{"Completed", "Failed", "Running"}}
	steps := []struct {
		name             string
		change           func()
		block, automaton string
	}{
		{"first run creates both", func() {}, "created", "created"},
		{"second run changes nothing", func() {}, "unchanged", "unchanged"},
		{"a new key updates the block only", func() { o.Key = "k2" }, "updated", "unchanged"},
		{"new states update the automation only", func() { o.States = append(o.States, "Crashed") }, "unchanged", "updated"},
		{"then nothing again", func() {}, "unchanged", "unchanged"},
	}
	for _, s := range steps {
		s.change()
		res, err := Setup(ctx, pf.Client(), o)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.Block != s.block || res.Automation != s.automaton || res.BlockID != "bd-dalgo-relay" || res.AutomationID != "auto-1" {
			t.Fatalf("%s: %+v", s.name, res)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	data := blocks["dalgo-relay"]["data"].(map[string]any)
	headers := data["headers"].(map[string]any)
	if data["url"] != o.URL || data["method"] != "POST" || headers["X-Notification-Key"] != "k2" || headers["Content-Type"] != "application/json" {
		t.Fatalf("block data %v", data)
	}
	a := automations["auto-1"]
	action := a["actions"].([]any)[0].(map[string]any)
	if action["type"] != "call-webhook" || action["block_document_id"] != "bd-dalgo-relay" || action["payload"] != PayloadTemplate {
		t.Fatalf("action %v", action)
	}
	if n := len(a["trigger"].(map[string]any)["expect"].([]any)); n != 4 {
		t.Fatalf("expect has %d events", n)
	}
	// The template renders (as Prefect would) into something Parse reads.
	rendered := strings.NewReplacer("{{ flow_run.id }}", runID, "{{ flow_run.name | tojson }}", `"a_b"`,
		"{{ flow_run.state.name | tojson }}", `"Completed"`, "{{ flow_run.state.type.value }}", "COMPLETED",
		"{{ flow_run.state.timestamp }}", "2026-11-27 12:00:00.123456+00:00", "{{ event.id }}", "e1",
		"{{ event.event }}", "prefect.flow-run.Completed").Replace(PayloadTemplate)
	if n, err := Parse([]byte(rendered)); err != nil || !n.Complete() || n.StateID != "e1" {
		t.Fatalf("rendered template %s → %+v %v", rendered, n, err)
	}
}

func TestSetupNeedsURLKeyAndStates(t *testing.T) {
	t.Parallel()
	pf := prefecttest.New(t)
	for _, o := range []SetupOptions{{Key: "k", States: []string{"Completed"}}, {URL: "u", States: []string{"Completed"}}, {URL: "u", Key: "k"}} {
		if _, err := Setup(context.Background(), pf.Client(), o); err == nil {
			t.Fatalf("%+v accepted", o)
		}
	}
	if len(pf.Calls()) != 0 {
		t.Fatal("Prefect was called for an invalid setup")
	}
}
