package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

func testService(t *testing.T) (*prefecttest.Server, *Service) {
	t.Helper()
	f := prefecttest.New(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	return f, New(f.Client(), log)
}

func TestSetKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		kv       []any
		want     string
	}{
		{"appends a new key, keeping order and Prefect's number text", `{"b":1,"a":0.0}`,
			[]any{"status", "COMPLETED"}, `{"b":1,"a":0.0,"status":"COMPLETED"}`},
		{"replaces an existing key in place", `{"state_name":"Completed","x":{"y":[1,2]}}`,
			[]any{"state_name", json.RawMessage(`"DBT_TEST_FAILED"`), "status", json.RawMessage(`null`)},
			`{"state_name":"DBT_TEST_FAILED","x":{"y":[1,2]},"status":null}`},
		{"empty object", `{}`, []any{"k", 1}, `{"k":1}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := setKeys(json.RawMessage(tc.in), tc.kv...)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if _, err := setKeys(json.RawMessage(`[1]`), "k", 1); err == nil {
		t.Fatal("a non-object must be an error")
	}
}

func TestCanonicalID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"95953467-381E-4230-B327-6CD9E1C92F5A":   "95953467-381e-4230-b327-6cd9e1c92f5a",
		"95953467381e4230b3276cd9e1c92f5a":       "95953467-381e-4230-b327-6cd9e1c92f5a",
		"nope":                                   "",
		"{95953467-381e-4230-b327-6cd9e1c92f5a}": "",
		"":                                       "",
	} {
		got, ok := canonicalID(in)
		if got != want || ok != (want != "") {
			t.Errorf("canonicalID(%q) = %q, %v", in, got, ok)
		}
	}
}

// taskRun is a /task_runs/filter row as Prefect returns it.
func taskRun(flowRun, name, child string) map[string]any {
	var c any
	if child != "" {
		c = child
	}
	return map[string]any{"flow_run_id": flowRun, "state": map[string]any{"name": name,
		"state_details": map[string]any{"child_flow_run_id": c}}}
}

func TestDBTTestFailedTrees(t *testing.T) {
	t.Parallel()
	// a → sub b → sub c (DBT_TEST_FAILED task); d → nothing; b is also asked
	// about as a root of its own, and e has a task whose state is null.
	rows := map[string][]map[string]any{
		"a": {taskRun("a", "Completed", "b")},
		"b": {taskRun("b", "Completed", "c")},
		"c": {taskRun("c", DBTTestFailed, "")},
		"e": {{"flow_run_id": "e", "state": nil}},
	}
	parent := map[string]string{"b": "a", "c": "b"} // subflow -> the run holding its parent task run
	f, s := testService(t)
	f.Handle("POST /task_runs/filter", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			FlowRuns struct {
				Operator string `json:"operator"`
				ID       struct {
					Any []string `json:"any_"`
				} `json:"id"`
				Parent struct {
					Any []string `json:"any_"`
				} `json:"parent_flow_run_id"`
			} `json:"flow_runs"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body.FlowRuns.Operator != "or_" {
			t.Errorf("flow_runs operator %q, want or_", body.FlowRuns.Operator)
		}
		out := []map[string]any{}
		for _, run := range []string{"a", "b", "c", "d", "e"} {
			if slices.Contains(body.FlowRuns.ID.Any, run) || slices.Contains(body.FlowRuns.Parent.Any, parent[run]) {
				out = append(out, rows[run]...)
			}
		}
		prefecttest.Write(w, 200, out)
	})
	got, err := s.dbtTestFailed(context.Background(), []string{"a", "d", "b", "e"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"a": true, "b": true}
	if len(got) != len(want) || !got["a"] || !got["b"] {
		t.Fatalf("got %v, want %v", got, want)
	}
	// One call reads two levels: a,d,b,e and their subflows (b, c).
	if n := len(f.CallsTo("POST", "/task_runs/filter")); n != 1 {
		t.Fatalf("%d task-run filter calls, want 1", n)
	}
}

// A subflow found only through parent_flow_run_id, not named by a task run's
// child_flow_run_id, is not part of the tree (the v1 graph never showed it);
// a tree three levels deep takes two calls.
func TestDBTTestFailedFollowsChildFlowRunIDs(t *testing.T) {
	t.Parallel()
	rows := map[string][]map[string]any{
		"a": {taskRun("a", "Completed", "b")},
		"b": {taskRun("b", "Completed", "c")},
		"c": {taskRun("c", DBTTestFailed, "")},
		"x": {taskRun("x", DBTTestFailed, "")},
	}
	parent := map[string]string{"b": "a", "c": "b", "x": "a"}
	var mu sync.Mutex // rows changes between the two reads
	f, s := testService(t)
	f.Handle("POST /task_runs/filter", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var body struct {
			FlowRuns struct {
				ID struct {
					Any []string `json:"any_"`
				} `json:"id"`
				Parent struct {
					Any []string `json:"any_"`
				} `json:"parent_flow_run_id"`
			} `json:"flow_runs"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		out := []map[string]any{}
		for _, run := range []string{"a", "b", "c", "x"} {
			if slices.Contains(body.FlowRuns.ID.Any, run) || slices.Contains(body.FlowRuns.Parent.Any, parent[run]) {
				out = append(out, rows[run]...)
			}
		}
		prefecttest.Write(w, 200, out)
	})
	got, err := s.dbtTestFailed(context.Background(), []string{"a"})
	if err != nil || !got["a"] {
		t.Fatalf("got %v, %v; want a failed (through c)", got, err)
	}
	if n := len(f.CallsTo("POST", "/task_runs/filter")); n != 2 {
		t.Fatalf("%d task-run filter calls, want 2", n)
	}
	// Without c's failure, x alone (not a child by child_flow_run_id) does not count.
	mu.Lock()
	rows["c"] = nil
	mu.Unlock()
	if got, err := s.dbtTestFailed(context.Background(), []string{"a"}); err != nil || got["a"] {
		t.Fatalf("got %v, %v; x must not count", got, err)
	}
}

// A caller that gives up must not fail the others sharing its call.
func TestSharedReadSurvivesACancelledCaller(t *testing.T) {
	t.Parallel()
	f, s := testService(t)
	const id = "95953467-381e-4230-b327-6cd9e1c92f5a"
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	f.Handle("GET /flow_runs/{id}", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-release
		prefecttest.Write(w, 200, map[string]any{"id": id})
	})
	ctxA, cancelA := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var errA, errB error
	var rawB json.RawMessage
	wg.Add(1)
	go func() { defer wg.Done(); _, errA = s.FlowRunPoll(ctxA, id) }()
	<-entered
	wg.Add(1)
	go func() { defer wg.Done(); rawB, errB = s.FlowRunPoll(context.Background(), id) }()
	time.Sleep(50 * time.Millisecond) // B joins A's call
	cancelA()
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if errB != nil || string(rawB) == "" {
		t.Fatalf("B failed with A's cancellation: %v", errB)
	}
	_ = errA // A may see the shared result or its own cancellation; either is fine
	if calls.Load() != 1 {
		t.Fatalf("%d upstream calls, want 1", calls.Load())
	}
}

func TestGraphNodesOrder(t *testing.T) {
	t.Parallel()
	f, s := testService(t)
	node := func(id, kind, label string, children ...string) []any {
		cs := []map[string]string{}
		for _, c := range children {
			cs = append(cs, map[string]string{"id": c})
		}
		return []any{id, map[string]any{"kind": kind, "id": id, "label": label, "children": cs,
			"start_time": nil, "end_time": nil}}
	}
	f.JSON("GET /flow_runs/{id}/graph-v2", 200, map[string]any{
		"root_node_ids": []string{"a", "s"},
		"nodes": []any{
			node("c", "task-run", "c"), node("a", "task-run", "a", "c", "b"),
			node("b", "task-run", "b", "c"), node("s", "flow-run", "flow / sub / run", "b"),
		},
	})
	nodes, err := s.graphNodes(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Label)
	}
	// Breadth-first from the roots, each node once; only the first " / " splits.
	if want := []string{"a", "sub / run", "c", "b"}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("order = %q, want %q", got, want)
	}
}

func TestLongRunningUpstreamErrors(t *testing.T) {
	t.Parallel()
	f, s := testService(t)
	f.JSON("POST /flow_runs/filter", 500, map[string]any{"exception_message": "Internal Server Error"})
	_, err := s.LongRunningFlowRuns(context.Background(), 2, time.Now())
	if apperr.CodeOf(err) != apperr.Upstream {
		t.Fatalf("err = %v, want 502", err)
	}
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Status() != 502 {
		t.Fatalf("status = %v", err)
	}
}
