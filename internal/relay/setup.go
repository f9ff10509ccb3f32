package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/retry"
)

// Names of what Setup creates, unless told otherwise.
const (
	DefaultBlockName      = "dalgo-relay"
	DefaultAutomationName = "dalgo-relay: flow run states"
)

// SetupOptions says what the setup command installs in Prefect.
type SetupOptions struct {
	URL            string   // the relay's public URL, e.g. https://proxy.example.org/webhooks/v1/notification/
	Key            string   // RELAY_INBOUND_KEY, sent by Prefect in X-Notification-Key
	States         []string // RELAY_STATES: one trigger event per state name
	BlockName      string   // Webhook block document name; "": DefaultBlockName
	AutomationName string   // "": DefaultAutomationName
	// Tags, when set, limit the automation to runs carrying one of these
	// Prefect tags (as Prefect 2's notification policies could); empty: all runs.
	Tags []string
	// Replace names automations that send the same notifications another
	// way (Prefect's "Flow Run State Change Notification", calling Django
	// directly). They are disabled before the relay's automation is enabled,
	// so no state reaches Django twice; a state in between is found by the
	// reconciler, which scans from the switch (RecordSetup).
	Replace []string
}

// SetupResult reports what changed: created, updated or unchanged.
type SetupResult struct {
	BlockID          string `json:"block_document_id"`
	Block            string `json:"block"`
	AutomationID     string `json:"automation_id"`
	Automation       string `json:"automation"`
	AutomationStates int    `json:"states"`
	// Disabled lists the ids of Replace automations this run disabled.
	Disabled []string `json:"disabled,omitempty"`
}

// PayloadTemplate is the body Prefect's call-webhook action renders (format 3
// of "Relay" in docs/ARCHITECTURE.md). flow_run.state is rebuilt from the triggering event,
// so it names the state that fired even if the run has moved on; .type.value
// because Jinja renders the enum itself as "StateType.COMPLETED"; tojson
// quotes names safely (jinja2's own filter, present on every Prefect 3).
const PayloadTemplate = `{"flow_run_id": "{{ flow_run.id }}", "flow_run_name": {{ flow_run.name | tojson }}, ` +
	`"state_name": {{ flow_run.state.name | tojson }}, "state_type": "{{ flow_run.state.type.value }}", ` +
	`"state_timestamp": "{{ flow_run.state.timestamp }}", "event_id": "{{ event.id }}", "event": "{{ event.event }}"}`

// Setup creates or updates, idempotently, the Webhook block and the
// automation that point Prefect at the relay. Running it twice changes nothing.
func Setup(ctx context.Context, pc *prefect.Client, o SetupOptions) (SetupResult, error) {
	if o.BlockName == "" {
		o.BlockName = DefaultBlockName
	}
	if o.AutomationName == "" {
		o.AutomationName = DefaultAutomationName
	}
	if o.URL == "" || o.Key == "" || len(o.States) == 0 {
		return SetupResult{}, fmt.Errorf("relay setup: the relay URL, the key and at least one state are required")
	}
	// Every step reads before it writes, so the whole setup can simply run
	// again when Prefect's SQLite answers 503 to a write (which Prefect's
	// client does not retry for non-idempotent calls).
	var res SetupResult
	err := retry.Do(ctx, 4, retry.Exponential{Base: time.Second, Max: 5 * time.Second}, func(ctx context.Context) error {
		var err error
		if res, err = setupOnce(ctx, pc, o); err != nil && !prefect.Retryable(err) {
			return retry.Permanent(err)
		}
		return err
	})
	return res, err
}

func setupOnce(ctx context.Context, pc *prefect.Client, o SetupOptions) (SetupResult, error) {
	var res SetupResult
	var err error
	if res.BlockID, res.Block, err = setupBlock(ctx, pc, o); err != nil {
		return res, err
	}
	if res.Disabled, err = disableAutomations(ctx, pc, o.Replace, o.AutomationName); err != nil {
		return res, err
	}
	res.AutomationID, res.Automation, err = setupAutomation(ctx, pc, o, res.BlockID)
	res.AutomationStates = len(o.States)
	return res, err
}

func setupBlock(ctx context.Context, pc *prefect.Client, o SetupOptions) (string, string, error) {
	want := map[string]any{
		"url":    o.URL,
		"method": "POST",
		"headers": map[string]any{
			"X-Notification-Key": o.Key,
			"Content-Type":       "application/json",
		},
	}
	var bt struct {
		ID string `json:"id"`
	}
	if err := pc.Get(ctx, "/block_types/slug/webhook", &bt); err != nil {
		return "", "", fmt.Errorf("relay setup: Prefect's webhook block type: %w", err)
	}
	var schemas []struct {
		ID string `json:"id"`
	}
	if err := pc.PostRead(ctx, "/block_schemas/filter", map[string]any{
		"block_schemas": map[string]any{"block_type_id": map[string]any{"any_": []string{bt.ID}}}, "limit": 1,
	}, &schemas); err != nil || len(schemas) == 0 {
		return "", "", fmt.Errorf("relay setup: no schema for the webhook block type (%v)", err)
	}
	var doc struct {
		ID            string         `json:"id"`
		BlockSchemaID string         `json:"block_schema_id"`
		Data          map[string]any `json:"data"`
	}
	err := pc.Get(ctx, "/block_types/slug/webhook/block_documents/name/"+url.PathEscape(o.BlockName)+"?include_secrets=true", &doc)
	switch {
	case prefect.IsNotFound(err):
		if err := pc.Do(ctx, "POST", "/block_documents/", map[string]any{
			"name": o.BlockName, "block_type_id": bt.ID, "block_schema_id": schemas[0].ID, "data": want,
		}, &doc, false); err != nil {
			return "", "", fmt.Errorf("relay setup: create webhook block: %w", err)
		}
		return doc.ID, "created", nil
	case err != nil:
		return "", "", fmt.Errorf("relay setup: read webhook block: %w", err)
	}
	if sameJSON(pick(doc.Data, "url", "method", "headers"), want) && doc.BlockSchemaID == schemas[0].ID {
		return doc.ID, "unchanged", nil
	}
	if err := pc.Do(ctx, "PATCH", "/block_documents/"+doc.ID, map[string]any{
		"data": want, "block_schema_id": schemas[0].ID, "merge_existing_data": false,
	}, nil, false); err != nil {
		return "", "", fmt.Errorf("relay setup: update webhook block: %w", err)
	}
	return doc.ID, "updated", nil
}

func setupAutomation(ctx context.Context, pc *prefect.Client, o SetupOptions, blockID string) (string, string, error) {
	expect := make([]string, 0, len(o.States))
	for _, s := range o.States {
		expect = append(expect, "prefect.flow-run."+s)
	}
	sort.Strings(expect)
	related := map[string]any{}
	if len(o.Tags) > 0 {
		ids := make([]string, 0, len(o.Tags))
		for _, t := range o.Tags {
			ids = append(ids, "prefect.tag."+t)
		}
		related = map[string]any{"prefect.resource.id": ids, "prefect.resource.role": "tag"}
	}
	want := map[string]any{
		"name":        o.AutomationName,
		"description": "Sends flow-run state changes to the prefect-proxy relay, which forwards them to Dalgo. Managed by relay-setup; edits are overwritten.",
		"enabled":     true,
		"trigger": map[string]any{
			"type": "event", "posture": "Reactive", "threshold": 1, "within": 0,
			"match":         map[string]any{"prefect.resource.id": "prefect.flow-run.*"},
			"match_related": related,
			"after":         []string{},
			"expect":        expect,
			"for_each":      []string{"prefect.resource.id"},
		},
		"actions": []any{map[string]any{
			"type": "call-webhook", "block_document_id": blockID, "payload": PayloadTemplate,
		}},
		"actions_on_trigger": []any{},
		"actions_on_resolve": []any{},
	}
	var found []map[string]any
	if err := pc.PostRead(ctx, "/automations/filter", map[string]any{
		"automations": map[string]any{"name": map[string]any{"any_": []string{o.AutomationName}}},
	}, &found); err != nil {
		return "", "", fmt.Errorf("relay setup: list automations: %w", err)
	}
	if len(found) == 0 {
		var created struct {
			ID string `json:"id"`
		}
		if err := pc.Do(ctx, "POST", "/automations/", want, &created, false); err != nil {
			return "", "", fmt.Errorf("relay setup: create automation: %w", err)
		}
		return created.ID, "created", nil
	}
	cur := found[0]
	id, _ := cur["id"].(string)
	if automationMatches(cur, want) {
		return id, "unchanged", nil
	}
	if err := pc.Do(ctx, "PUT", "/automations/"+id, want, nil, false); err != nil {
		return "", "", fmt.Errorf("relay setup: update automation: %w", err)
	}
	return id, "updated", nil
}

// disableAutomations turns off the enabled automations named in names (never
// the relay's own) and returns their ids.
func disableAutomations(ctx context.Context, pc *prefect.Client, names []string, own string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	var found []struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
	}
	if err := pc.PostRead(ctx, "/automations/filter", map[string]any{
		"automations": map[string]any{"name": map[string]any{"any_": names}},
	}, &found); err != nil {
		return nil, fmt.Errorf("relay setup: list automations to replace: %w", err)
	}
	var disabled []string
	for _, a := range found {
		if !a.Enabled || a.Name == own {
			continue
		}
		if err := pc.Do(ctx, "PATCH", "/automations/"+a.ID, map[string]any{"enabled": false}, nil, true); err != nil {
			return disabled, fmt.Errorf("relay setup: disable automation %q: %w", a.Name, err)
		}
		disabled = append(disabled, a.ID)
	}
	return disabled, nil
}

// automationMatches compares the fields setup controls; Prefect adds ids and
// timestamps of its own, and may order expect differently.
func automationMatches(cur, want map[string]any) bool {
	for _, k := range []string{"name", "description", "enabled", "actions_on_trigger", "actions_on_resolve"} {
		if !sameJSON(cur[k], want[k]) {
			return false
		}
	}
	ct, _ := cur["trigger"].(map[string]any)
	wt := want["trigger"].(map[string]any)
	for k, v := range wt {
		cv := ct[k]
		if k == "expect" {
			cv = sortedStrings(cv)
		}
		if !sameJSON(cv, v) {
			return false
		}
	}
	ca, _ := cur["actions"].([]any)
	wa := want["actions"].([]any)
	if len(ca) != len(wa) {
		return false
	}
	for i := range wa {
		c, _ := ca[i].(map[string]any)
		if !sameJSON(pick(c, "type", "block_document_id", "payload"), wa[i]) {
			return false
		}
	}
	return true
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func sortedStrings(v any) any {
	list, ok := v.([]any)
	if !ok {
		return v
	}
	s := make([]string, 0, len(list))
	for _, x := range list {
		str, _ := x.(string)
		s = append(s, str)
	}
	sort.Strings(s)
	return s
}

// sameJSON compares two values by their JSON meaning.
func sameJSON(a, b any) bool {
	var x, y any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &x)
	_ = json.Unmarshal(jb, &y)
	return reflect.DeepEqual(x, y)
}
