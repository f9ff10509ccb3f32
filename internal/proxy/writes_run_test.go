package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect/prefecttest"
)

// withBlockTypes makes the fake know every block type: type id
// "type-<slug>", newest schema "schema-<slug>".
func withBlockTypes(f *prefecttest.Server) {
	f.Handle("GET /block_types/slug/{slug}", func(w http.ResponseWriter, r *http.Request) {
		prefecttest.Write(w, 200, map[string]string{"id": "type-" + r.PathValue("slug")})
	})
	f.Handle("POST /block_schemas/filter", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			BlockSchemas struct {
				BlockTypeID struct {
					Any []string `json:"any_"`
				} `json:"block_type_id"`
			} `json:"block_schemas"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		slug := strings.TrimPrefix(body.BlockSchemas.BlockTypeID.Any[0], "type-")
		prefecttest.Write(w, 200, []map[string]string{{"id": "schema-" + slug, "checksum": "sha256:" + slug}})
	})
}

// lookups are the calls withBlockTypes answers, for one slug.
func lookups(slug string) []string {
	return []string{"GET /block_types/slug/" + slug, "POST /block_schemas/filter"}
}

type runCase struct {
	name   string
	op     string
	params map[string]string
	body   string
	jobID  string
	// attempt of the job; 0: outside a job
	attempt int
	setup   func(f *prefecttest.Server)
	// outcome: result JSON, or error status+detail, or a retryable error
	result    string
	status    int
	detail    string
	retryable bool
	calls     []string       // exact "METHOD /path" sequence (without /api)
	bodies    map[int]string // call index -> exact JSON body
	check     func(t *testing.T, calls []prefecttest.Call)
	skipCalls bool
}

func runCases(t *testing.T, cases []runCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, s := testService(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			o := writeOps()[tc.op]
			p, err := o.Decode(tc.params, []byte(tc.body))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			raw, _ := json.Marshal(p)
			res, err := o.Run(context.Background(), s, raw, Job{Key: tc.jobID, Attempt: tc.attempt})
			switch {
			case tc.retryable:
				if err == nil || !prefect.Retryable(err) {
					t.Fatalf("want a retryable error, got %v (%v)", err, res)
				}
			case tc.status != 0:
				var ae *apperr.Error
				if !errors.As(err, &ae) || ae.Status() != tc.status || ae.Message != tc.detail {
					t.Fatalf("want %d %q, got %v", tc.status, tc.detail, err)
				}
				if prefect.Retryable(err) {
					t.Fatalf("route error %v must not be retryable", err)
				}
			default:
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				got, _ := json.Marshal(res)
				if !jsonEqual(t, got, tc.result) {
					t.Fatalf("result %s, want %s", got, tc.result)
				}
			}
			calls := f.Calls()
			if !tc.skipCalls {
				var seq []string
				for _, c := range calls {
					seq = append(seq, c.Method+" "+strings.TrimPrefix(c.Path, "/api"))
				}
				if strings.Join(seq, "\n") != strings.Join(tc.calls, "\n") {
					t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(seq, "\n"), strings.Join(tc.calls, "\n"))
				}
			}
			for i, want := range tc.bodies {
				if !jsonEqual(t, calls[i].Body, want) {
					t.Errorf("call %d %s body\n%s\nwant\n%s", i, calls[i].Path, calls[i].Body, want)
				}
			}
			if tc.check != nil {
				tc.check(t, calls)
			}
		})
	}
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestRunBlocks(t *testing.T) {
	t.Parallel()
	serverDoc := `{"id":"srv-1","name":"srv","data":{"username":"airbyte","password":"pw","server_host":"h","server_port":8000,"api_version":"v1","use_ssl":false}}`
	createBody := `{"blockName":"My_Srv","serverHost":"h","serverPort":"8000","apiVersion":"v1"}`
	serverData := `{"username":"airbyte","password":"password","server_host":"h","server_port":8000,"api_version":"v1","use_ssl":false}`
	conflict := func(f *prefecttest.Server) {
		f.JSON("POST /block_documents/", 409, map[string]string{"detail": "Block already exists"})
	}
	runCases(t, []runCase{
		{
			name: "airbyte server create", op: OpAirbyteServerCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("POST /block_documents/", 201, map[string]string{"id": "new-1"})
			},
			result: `{"block_id":"new-1","cleaned_block_name":"mysrv"}`,
			calls:  cat(lookups("airbyte-server"), []string{"POST /block_documents/"}),
			bodies: map[int]string{2: `{"name":"mysrv","block_schema_id":"schema-airbyte-server","block_type_id":"type-airbyte-server","data":` + serverData + `,"is_anonymous":false}`},
		},
		{
			name: "airbyte server create: an existing name is the route's 400", op: OpAirbyteServerCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				conflict(f)
				f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/mysrv", 200, json.RawMessage(serverDoc))
			},
			status: 400, detail: "failed to create airbyte server block",
			calls: cat(lookups("airbyte-server"), []string{"POST /block_documents/", "GET /block_types/slug/airbyte-server/block_documents/name/mysrv"}),
		},
		{
			name: "airbyte server create: a retry finding its own block succeeds", op: OpAirbyteServerCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				conflict(f)
				f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/mysrv", 200,
					json.RawMessage(`{"id":"old-1","data":`+serverData+`}`))
			},
			result: `{"block_id":"old-1","cleaned_block_name":"mysrv"}`,
			calls:  cat(lookups("airbyte-server"), []string{"POST /block_documents/", "GET /block_types/slug/airbyte-server/block_documents/name/mysrv"}),
			check: func(t *testing.T, calls []prefecttest.Call) {
				if calls[3].Query.Get("include_secrets") != "true" {
					t.Errorf("load without include_secrets: %v", calls[3].Query)
				}
			},
		},
		{
			name: "airbyte server create: Prefect 503 stays retryable", op: OpAirbyteServerCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("POST /block_documents/", 503, map[string]string{"exception_message": "Service Unavailable"})
			},
			retryable: true,
			calls:     cat(lookups("airbyte-server"), []string{"POST /block_documents/"}),
		},
		{
			name: "airbyte server create: Prefect refusing credentials is a 502", op: OpAirbyteServerCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /block_types/slug/airbyte-server", 401, map[string]string{"exception_message": "Unauthorized"})
			},
			status: 502, detail: "Prefect refused the proxy's credentials (401)",
			calls: []string{"GET /block_types/slug/airbyte-server"},
		},
		{
			name: "airbyte server update: only the given fields change", op: OpAirbyteServerUpdate,
			body: `{"blockName":"srv","serverPort":"9000","password":"new","useSSL":true,"serverHost":""}`,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/srv", 200, json.RawMessage(serverDoc))
				f.Handle("PATCH /block_documents/srv-1", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
			},
			result: `{"block_id":"srv-1","cleaned_block_name":"srv"}`,
			calls:  cat([]string{"GET /block_types/slug/airbyte-server/block_documents/name/srv"}, lookups("airbyte-server"), []string{"PATCH /block_documents/srv-1"}),
			bodies: map[int]string{3: `{"block_schema_id":"schema-airbyte-server","data":{"username":"airbyte","password":"new","server_host":"h","server_port":9000,"api_version":"v1","use_ssl":true}}`},
		},
		{
			name: "airbyte server update: missing block", op: OpAirbyteServerUpdate, body: `{"blockName":"nope"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/nope", 404, map[string]string{"detail": "Block document not found"})
			},
			status: 400, detail: "failed to update airbyte server block",
			calls: []string{"GET /block_types/slug/airbyte-server/block_documents/name/nope"},
		},
		{
			name: "airbyte connection: create", op: OpAirbyteConnectionUpsert,
			body: `{"serverBlockName":"srv","connectionId":"AB3E4C1A-2B4D-4C6E-9F80-A1B2C3D4E5F6","connectionBlockName":"ab3e4c1a","connectionName":"Pg → WH","extra":{"env":{"k":"v"},"name":"overridden"}}`,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/srv", 200, json.RawMessage(serverDoc))
				f.JSON("POST /block_documents/", 201, map[string]string{"id": "conn-1"})
			},
			result: `{"block_id":"conn-1","cleaned_block_name":"ab3e4c1a"}`,
			calls:  cat([]string{"GET /block_types/slug/airbyte-server/block_documents/name/srv"}, lookups("airbyte-connection"), []string{"POST /block_documents/"}),
			bodies: map[int]string{3: `{"name":"ab3e4c1a","block_schema_id":"schema-airbyte-connection","block_type_id":"type-airbyte-connection","is_anonymous":false,
				"data":{"airbyte_server":{"$ref":{"block_document_id":"srv-1"}},"connection_id":"ab3e4c1a-2b4d-4c6e-9f80-a1b2c3d4e5f6","poll_interval_s":15,"status_updates":false,"timeout":5,"extra":{"env":{"k":"v"},"name":"Pg → WH"}}}`},
		},
		{
			name: "airbyte connection: existing block is overwritten", op: OpAirbyteConnectionUpsert,
			body: `{"serverBlockName":"srv","connectionId":"ab3e4c1a-2b4d-4c6e-9f80-a1b2c3d4e5f6","connectionBlockName":"c1"}`,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/srv", 200, json.RawMessage(serverDoc))
				conflict(f)
				f.JSON("GET /block_types/slug/airbyte-connection/block_documents/name/c1", 200, map[string]any{"id": "conn-9", "data": map[string]any{}})
				f.Handle("PATCH /block_documents/conn-9", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
			},
			result: `{"block_id":"conn-9","cleaned_block_name":"c1"}`,
			calls: cat([]string{"GET /block_types/slug/airbyte-server/block_documents/name/srv"}, lookups("airbyte-connection"),
				[]string{"POST /block_documents/", "GET /block_types/slug/airbyte-connection/block_documents/name/c1", "PATCH /block_documents/conn-9"}),
			bodies: map[int]string{5: `{"block_schema_id":"schema-airbyte-connection","data":{"airbyte_server":{"$ref":{"block_document_id":"srv-1"}},"connection_id":"ab3e4c1a-2b4d-4c6e-9f80-a1b2c3d4e5f6","poll_interval_s":15,"status_updates":false,"timeout":5,"extra":{"name":""}}}`},
		},
		{
			name: "airbyte connection: missing server block", op: OpAirbyteConnectionUpsert,
			body: `{"serverBlockName":"nope","connectionId":"ab3e4c1a-2b4d-4c6e-9f80-a1b2c3d4e5f6","connectionBlockName":"c1"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/nope", 404, map[string]string{"detail": "Block document not found"})
			},
			status: 400, detail: "failed to upsert airbyte connection block",
			calls: []string{"GET /block_types/slug/airbyte-server/block_documents/name/nope"},
		},
		{
			name: "secret create is an upsert", op: OpSecretCreate, body: `{"secret":"{\"a\": 1}","blockName":"Dbt Profile"}`,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				conflict(f)
				f.JSON("GET /block_types/slug/secret/block_documents/name/dbtprofile", 200, map[string]any{"id": "sec-1", "data": map[string]string{"value": "old"}})
				f.Handle("PATCH /block_documents/sec-1", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
			},
			result: `{"block_id":"sec-1","block_name":"dbtprofile"}`,
			calls:  cat(lookups("secret"), []string{"POST /block_documents/", "GET /block_types/slug/secret/block_documents/name/dbtprofile", "PATCH /block_documents/sec-1"}),
			bodies: map[int]string{
				2: `{"name":"dbtprofile","block_schema_id":"schema-secret","block_type_id":"type-secret","data":{"value":"{\"a\": 1}"},"is_anonymous":false}`,
				4: `{"block_schema_id":"schema-secret","data":{"value":"{\"a\": 1}"}}`,
			},
		},
		{
			name: "secret upsert of a new name creates it", op: OpSecretUpsert, body: `{"secret":"tok","blockName":"git-pat"}`,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("GET /block_types/slug/secret/block_documents/name/git-pat", 404, map[string]string{"detail": "Block document not found"})
				f.JSON("POST /block_documents/", 201, map[string]string{"id": "sec-2"})
			},
			result: `{"block_id":"sec-2","block_name":"git-pat"}`,
			calls:  cat([]string{"GET /block_types/slug/secret/block_documents/name/git-pat"}, lookups("secret"), []string{"POST /block_documents/"}),
		},
		{
			name: "secret upsert of an existing name patches it", op: OpSecretUpsert, body: `{"secret":"tok2","blockName":"git-pat"}`,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("GET /block_types/slug/secret/block_documents/name/git-pat", 200, map[string]any{"id": "sec-3", "data": map[string]string{"value": "tok"}})
				f.Handle("PATCH /block_documents/sec-3", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
			},
			result: `{"block_id":"sec-3","block_name":"git-pat"}`,
			calls:  cat([]string{"GET /block_types/slug/secret/block_documents/name/git-pat"}, lookups("secret"), []string{"PATCH /block_documents/sec-3"}),
			bodies: map[int]string{3: `{"block_schema_id":"schema-secret","data":{"value":"tok2"}}`},
		},
		{
			name: "secret: Prefect 422 is the route's 400 without the secret", op: OpSecretCreate, body: `{"secret":"hunter2","blockName":"x"}`,
			setup: func(f *prefecttest.Server) {
				withBlockTypes(f)
				f.JSON("POST /block_documents/", 422, map[string]any{"exception_detail": []any{}, "request_body": map[string]any{"data": map[string]string{"value": "hunter2"}}})
			},
			status: 400, detail: "failed to prefect secret block",
			calls: cat(lookups("secret"), []string{"POST /block_documents/"}),
			check: func(t *testing.T, _ []prefecttest.Call) {}, // the error text is checked below
		},
		{
			name: "delete block", op: OpBlockDelete, params: map[string]string{"block_id": depID},
			setup: func(f *prefecttest.Server) {
				f.Handle("DELETE /block_documents/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
			},
			result: `null`, calls: []string{"DELETE /block_documents/" + depID},
		},
		{
			name: "delete block: Prefect's text is the detail", op: OpBlockDelete, params: map[string]string{"block_id": depID},
			setup: func(f *prefecttest.Server) {
				f.Handle("DELETE /block_documents/{id}", func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(404)
					_, _ = io.WriteString(w, `{"detail":"Block document not found"}`)
				})
			},
			status: 400, detail: `{"detail":"Block document not found"}`, calls: []string{"DELETE /block_documents/" + depID},
		},
		{
			name: "delete block: gone on a retried attempt is done", op: OpBlockDelete, params: map[string]string{"block_id": depID},
			attempt: 2,
			setup: func(f *prefecttest.Server) {
				f.JSON("DELETE /block_documents/{id}", 404, map[string]string{"detail": "Block document not found"})
			},
			result: `null`, calls: []string{"DELETE /block_documents/" + depID},
		},
		{
			name: "delete block: not found on the first attempt is still the 400", op: OpBlockDelete, params: map[string]string{"block_id": depID},
			attempt: 1,
			setup: func(f *prefecttest.Server) {
				f.Handle("DELETE /block_documents/{id}", func(w http.ResponseWriter, _ *http.Request) {
					w.WriteHeader(404)
					_, _ = io.WriteString(w, `{"detail":"Block document not found"}`)
				})
			},
			status: 400, detail: `{"detail":"Block document not found"}`, calls: []string{"DELETE /block_documents/" + depID},
		},
		{
			name: "delete block: 502 stays retryable", op: OpBlockDelete, params: map[string]string{"block_id": depID},
			setup: func(f *prefecttest.Server) {
				f.JSON("DELETE /block_documents/{id}", 502, map[string]string{"detail": "bad gateway"})
			},
			retryable: true, calls: []string{"DELETE /block_documents/" + depID},
		},
	})
}

func TestSecretNeverInErrors(t *testing.T) {
	t.Parallel()
	f, s := testService(t)
	withBlockTypes(f)
	f.JSON("POST /block_documents/", 422, map[string]any{"request_body": map[string]any{"data": map[string]string{"value": "hunter2"}}})
	o := writeOps()[OpSecretCreate]
	p, _ := o.Decode(nil, []byte(`{"secret":"hunter2","blockName":"x"}`))
	raw, _ := json.Marshal(p)
	_, err := o.Run(context.Background(), s, raw, Job{Key: "j"})
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(fmt.Sprint(apperr.From(err).Body()), "hunter2") {
		t.Fatalf("error leaks the secret or is missing: %v", err)
	}
}

func TestBlockTypeRegistration(t *testing.T) {
	t.Parallel()
	f, s := testService(t)
	var mu sync.Mutex
	types := map[string]string{} // slug -> id
	schemas := map[string]string{}
	f.Handle("GET /block_types/slug/{slug}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if id, ok := types[r.PathValue("slug")]; ok {
			prefecttest.Write(w, 200, map[string]string{"id": id})
			return
		}
		prefecttest.Write(w, 404, map[string]string{"detail": "Block type not found"})
	})
	f.Handle("POST /block_types/", func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		defer mu.Unlock()
		slug := b["slug"].(string)
		types[slug] = "type-" + slug
		prefecttest.Write(w, 201, map[string]string{"id": types[slug]})
	})
	f.Handle("POST /block_schemas/filter", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			BlockSchemas struct {
				BlockTypeID struct {
					Any []string `json:"any_"`
				} `json:"block_type_id"`
			} `json:"block_schemas"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		defer mu.Unlock()
		if id, ok := schemas[b.BlockSchemas.BlockTypeID.Any[0]]; ok {
			prefecttest.Write(w, 200, []map[string]string{{"id": id, "checksum": "sha256:" + id}})
			return
		}
		prefecttest.Write(w, 200, []any{})
	})
	f.Handle("POST /block_schemas/", func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		defer mu.Unlock()
		id := "schema-of-" + b["block_type_id"].(string)
		schemas[b["block_type_id"].(string)] = id
		prefecttest.Write(w, 201, map[string]string{"id": id, "checksum": "sha256:" + id})
	})
	f.Handle("GET /block_schemas/{id}", func(w http.ResponseWriter, r *http.Request) {
		prefecttest.Write(w, 200, map[string]string{"id": r.PathValue("id"), "checksum": "sha256:" + r.PathValue("id")})
	})
	f.JSON("GET /block_types/slug/airbyte-server/block_documents/name/srv", 200, map[string]any{"id": "srv-1", "data": map[string]any{}})
	f.JSON("POST /block_documents/", 201, map[string]string{"id": "conn-1"})

	o := writeOps()[OpAirbyteConnectionUpsert]
	p, _ := o.Decode(nil, []byte(`{"serverBlockName":"srv","connectionId":"ab3e4c1a-2b4d-4c6e-9f80-a1b2c3d4e5f6","connectionBlockName":"c"}`))
	raw, _ := json.Marshal(p)
	// Several jobs at once on a fresh Prefect: one registration of each.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := o.Run(context.Background(), s, raw, Job{Key: "j"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := len(f.CallsTo("POST", "/block_types/")); n != 2 {
		t.Fatalf("%d block type registrations, want 2", n)
	}
	regs := f.CallsTo("POST", "/block_schemas/")
	if len(regs) != 2 {
		t.Fatalf("%d schema registrations, want 2", len(regs))
	}
	var server, conn struct {
		BlockTypeID  string          `json:"block_type_id"`
		Capabilities []string        `json:"capabilities"`
		Fields       json.RawMessage `json:"fields"`
	}
	_ = json.Unmarshal(regs[0].Body, &server)
	_ = json.Unmarshal(regs[1].Body, &conn)
	var sf, cf map[string]any
	_ = json.Unmarshal(server.Fields, &sf)
	_ = json.Unmarshal(conn.Fields, &cf)
	if server.BlockTypeID != "type-airbyte-server" || fmt.Sprint(sf["secret_fields"]) != "[password]" || sf["block_type_slug"] != "airbyte-server" {
		t.Errorf("server schema %s", regs[0].Body)
	}
	wantRef := `map[airbyte_server:map[block_schema_checksum:sha256:schema-of-type-airbyte-server block_type_slug:airbyte-server]]`
	if conn.BlockTypeID != "type-airbyte-connection" || fmt.Sprint(cf["block_schema_references"]) != wantRef ||
		fmt.Sprint(cf["secret_fields"]) != "[airbyte_server.password]" || cf["definitions"].(map[string]any)["AirbyteServer"] == nil {
		t.Errorf("connection schema %s", regs[1].Body)
	}
	// Cached: another job makes no lookups.
	before := len(f.Calls())
	if _, err := o.Run(context.Background(), s, raw, Job{Key: "j"}); err != nil {
		t.Fatal(err)
	}
	if got := len(f.Calls()) - before; got != 2 { // load server block, POST document
		t.Fatalf("%d calls after caching, want 2", got)
	}
}

func TestBlockTypeRegistrationRace(t *testing.T) {
	t.Parallel()
	f, s := testService(t)
	gets := 0
	f.Handle("GET /block_types/slug/{slug}", func(w http.ResponseWriter, _ *http.Request) {
		gets++
		if gets == 1 {
			prefecttest.Write(w, 404, map[string]string{"detail": "Block type not found"})
			return
		}
		prefecttest.Write(w, 200, map[string]string{"id": "their-type"})
	})
	f.JSON("POST /block_types/", 409, map[string]string{"detail": "Block type already exists"})
	f.JSON("POST /block_schemas/filter", 200, []map[string]string{{"id": "their-schema"}})
	ref, err := s.blockRef(context.Background(), AirbyteServerSlug)
	if err != nil || ref.TypeID != "their-type" || ref.SchemaID != "their-schema" {
		t.Fatalf("ref %+v err %v", ref, err)
	}
}

func TestRunDeployments(t *testing.T) {
	t.Parallel()
	dep := map[string]string{"deployment_id": depID}
	createBody := `{"flow_name":"pipeline-o-1","deployment_name":"pipeline-o-1","org_slug":"o","deployment_params":{"config":{"tasks":[]}},"cron":"0 1 * * *"}`
	noContent := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }
	common := `"work_pool_name":"default-agent-pool","work_queue_name":"ddp","tags":["o"],"parameters":{"config":{"tasks":[]}},
		"schedules":[{"schedule":{"cron":"0 1 * * *","timezone":"UTC","day_or":true},"active":true}],
		"entrypoint":"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5",
		"pull_steps":[{"prefect.deployments.steps.git_clone":{"repository":"https://github.com/DalgoT4D/prefect-proxy.git","branch":"main"}}],
		"parameter_openapi_schema":` + parameterSchema + `,"enforce_parameter_schema":true,"job_variables":{}`
	depDoc := func(schedules string) string {
		return `{"id":"` + depID + `","name":"d","paused":false,"schedules":` + schedules + `}`
	}
	sched := `{"id":"s1","created":"x","updated":"y","deployment_id":"` + depID + `","schedule":{"cron":"0 1 * * *","timezone":"UTC","day_or":true},"active":true,"max_scheduled_runs":null,"parameters":{},"slug":null,"new_field_of_a_newer_prefect":1}`
	runCases(t, []runCase{
		{
			name: "create", op: OpDeploymentCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /work_pools/default-agent-pool", 200, map[string]string{"name": "default-agent-pool"})
				f.JSON("GET /deployments/name/deployment-schedule-flow-v5/pipeline-o-1", 404, map[string]string{"detail": "Deployment not found"})
				f.JSON("POST /flows/", 201, map[string]string{"id": "flow-1"})
				f.JSON("POST /deployments/", 201, map[string]string{"id": depID})
			},
			result: `{"deployment":{"id":"` + depID + `","name":"pipeline-o-1","params":{"config":{"tasks":[]}}}}`,
			calls: []string{"GET /work_pools/default-agent-pool", "GET /deployments/name/deployment-schedule-flow-v5/pipeline-o-1",
				"POST /flows/", "POST /deployments/"},
			bodies: map[int]string{
				2: `{"name":"deployment-schedule-flow-v5"}`,
				3: `{` + common + `,"flow_id":"flow-1","name":"pipeline-o-1","paused":false,"path":null}`,
			},
		},
		{
			name: "create: an existing name is updated in place", op: OpDeploymentCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /work_pools/default-agent-pool", 200, map[string]string{"name": "default-agent-pool"})
				f.JSON("GET /deployments/name/deployment-schedule-flow-v5/pipeline-o-1", 200, json.RawMessage(depDoc(`[]`)))
				f.Handle("PATCH /deployments/{id}", noContent)
			},
			result: `{"deployment":{"id":"` + depID + `","name":"pipeline-o-1","params":{"config":{"tasks":[]}}}}`,
			calls:  []string{"GET /work_pools/default-agent-pool", "GET /deployments/name/deployment-schedule-flow-v5/pipeline-o-1", "PATCH /deployments/" + depID},
			bodies: map[int]string{2: `{` + common + `}`},
		},
		{
			name: "create: pool and queue given, no cron", op: OpDeploymentCreate,
			body: `{"flow_name":"f","deployment_name":"m","org_slug":"o","deployment_params":{},"cron":"","work_pool_name":"pool2","work_queue_name":"q2"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /work_pools/pool2", 200, map[string]string{"name": "pool2"})
				f.JSON("GET /deployments/name/deployment-schedule-flow-v5/m", 404, map[string]string{"detail": "Deployment not found"})
				f.JSON("POST /flows/", 200, map[string]string{"id": "flow-1"})
				f.JSON("POST /deployments/", 201, map[string]string{"id": depID})
			},
			result: `{"deployment":{"id":"` + depID + `","name":"m","params":{}}}`,
			calls:  []string{"GET /work_pools/pool2", "GET /deployments/name/deployment-schedule-flow-v5/m", "POST /flows/", "POST /deployments/"},
			check: func(t *testing.T, calls []prefecttest.Call) {
				b := calls[3].JSON(t)
				if fmt.Sprint(b["schedules"]) != "[]" || b["work_pool_name"] != "pool2" || b["work_queue_name"] != "q2" {
					t.Errorf("body %s", calls[3].Body)
				}
			},
		},
		{
			name: "create: unknown work pool", op: OpDeploymentCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /work_pools/default-agent-pool", 404, map[string]string{"detail": "Work pool not found"})
			},
			status: 400, detail: "failed to create deployment", calls: []string{"GET /work_pools/default-agent-pool"},
		},
		{
			name: "create: Prefect rejects the deployment", op: OpDeploymentCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /work_pools/default-agent-pool", 200, map[string]string{})
				f.JSON("GET /deployments/name/deployment-schedule-flow-v5/pipeline-o-1", 404, map[string]string{"detail": "Deployment not found"})
				f.JSON("POST /flows/", 200, map[string]string{"id": "flow-1"})
				f.JSON("POST /deployments/", 422, map[string]string{"exception_message": "Invalid request received."})
			},
			status: 400, detail: "failed to create deployment", skipCalls: true,
		},
		{
			name: "create: Prefect down is retryable", op: OpDeploymentCreate, body: createBody,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /work_pools/default-agent-pool", 503, map[string]string{"exception_message": "Service Unavailable"})
			},
			retryable: true, skipCalls: true,
		},
		{
			name: "update: Django's body replaces parameters and schedules", op: OpDeploymentUpdate, params: dep,
			body: `{"cron":"5 4 * * *","deployment_params":{"config":{"a":1}}}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 200, json.RawMessage(depDoc(`[`+sched+`]`)))
				f.Handle("PATCH /deployments/{id}", noContent)
			},
			result: `{"success":1}`,
			calls:  []string{"GET /deployments/" + depID, "PATCH /deployments/" + depID},
			bodies: map[int]string{1: `{"parameters":{"config":{"a":1}},"schedules":[{"schedule":{"cron":"5 4 * * *","timezone":"UTC","day_or":true},"active":true}]}`},
		},
		{
			name: "update: cron null removes the schedule", op: OpDeploymentUpdate, params: dep,
			body: `{"cron":null,"deployment_params":{}}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 200, json.RawMessage(depDoc(`[`+sched+`]`)))
				f.Handle("PATCH /deployments/{id}", noContent)
			},
			result: `{"success":1}`,
			calls:  []string{"GET /deployments/" + depID, "PATCH /deployments/" + depID},
			bodies: map[int]string{1: `{"parameters":{},"schedules":[]}`},
		},
		{
			name: "update: slugged schedules are deleted first", op: OpDeploymentUpdate, params: dep,
			body: `{"cron":"1 1 * * *"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 200, json.RawMessage(depDoc(`[{"id":"s1","slug":"daily"},{"id":"s2","slug":"other"}]`)))
				f.Handle("DELETE /deployments/{id}/schedules/{sid}", noContent)
				f.Handle("PATCH /deployments/{id}", noContent)
			},
			result: `{"success":1}`,
			calls: []string{"GET /deployments/" + depID, "DELETE /deployments/" + depID + "/schedules/s1",
				"DELETE /deployments/" + depID + "/schedules/s2", "PATCH /deployments/" + depID},
			bodies: map[int]string{3: `{"schedules":[{"schedule":{"cron":"1 1 * * *","timezone":"UTC","day_or":true},"active":true}]}`},
		},
		{
			name: "update: absent keys are left alone", op: OpDeploymentUpdate, params: dep,
			body: `{"deployment_params":{"config":{}},"work_queue_name":"q9","work_pool_name":""}`,
			setup: func(f *prefecttest.Server) {
				f.Handle("PATCH /deployments/{id}", noContent)
			},
			result: `{"success":1}`,
			calls:  []string{"PATCH /deployments/" + depID},
			bodies: map[int]string{0: `{"parameters":{"config":{}},"work_queue_name":"q9"}`},
		},
		{
			name: "update: nothing to change still checks the deployment", op: OpDeploymentUpdate, params: dep, body: `{}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 404, map[string]string{"detail": "Deployment not found"})
			},
			status: 400, detail: "failed to update the deployment", calls: []string{"GET /deployments/" + depID},
		},
		{
			name: "update: invalid cron", op: OpDeploymentUpdate, params: dep, body: `{"cron":"nope"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 200, json.RawMessage(depDoc(`[]`)))
				f.JSON("PATCH /deployments/{id}", 422, map[string]string{"exception_message": "Invalid request received."})
			},
			status: 400, detail: "failed to update the deployment", calls: []string{"GET /deployments/" + depID, "PATCH /deployments/" + depID},
		},
		{
			name: "entrypoint", op: OpDeploymentEntrypoint, params: dep, body: `{"entrypoint":"a.py:f","other":1}`,
			setup:  func(f *prefecttest.Server) { f.Handle("PATCH /deployments/{id}", noContent) },
			result: `{"success":1}`, calls: []string{"PATCH /deployments/" + depID},
			bodies: map[int]string{0: `{"entrypoint":"a.py:f"}`},
		},
		{
			name: "entrypoint: unknown deployment", op: OpDeploymentEntrypoint, params: dep, body: `{"entrypoint":"a.py:f"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("PATCH /deployments/{id}", 404, map[string]string{"detail": "Deployment not found"})
			},
			status: 400, detail: "failed to update deployment entrypoint", calls: []string{"PATCH /deployments/" + depID},
		},
		{
			name: "delete deployment", op: OpDeploymentDelete, params: dep,
			setup:  func(f *prefecttest.Server) { f.Handle("DELETE /deployments/{id}", noContent) },
			result: `null`, calls: []string{"DELETE /deployments/" + depID},
		},
		{
			name: "delete deployment: Prefect's text", op: OpDeploymentDelete, params: dep,
			setup: func(f *prefecttest.Server) {
				f.Handle("DELETE /deployments/{id}", func(w http.ResponseWriter, _ *http.Request) {
					w.WriteHeader(404)
					_, _ = io.WriteString(w, `{"detail":"Deployment not found"}`)
				})
			},
			status: 400, detail: `{"detail":"Deployment not found"}`, calls: []string{"DELETE /deployments/" + depID},
		},
		{
			name: "delete deployment: gone on a retried attempt is done", op: OpDeploymentDelete, params: dep, attempt: 3,
			setup: func(f *prefecttest.Server) {
				f.JSON("DELETE /deployments/{id}", 404, map[string]string{"detail": "Deployment not found"})
			},
			result: `null`, calls: []string{"DELETE /deployments/" + depID},
		},
		{
			name: "set_schedule inactive", op: OpDeploymentSetSchedule, params: map[string]string{"deployment_id": depID, "status": "inactive"},
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 200, json.RawMessage(depDoc(`[`+sched+`]`)))
				f.Handle("PATCH /deployments/{id}", noContent)
			},
			result: `{"success":1}`, calls: []string{"GET /deployments/" + depID, "PATCH /deployments/" + depID},
			bodies: map[int]string{1: `{"schedules":[{"schedule":{"cron":"0 1 * * *","timezone":"UTC","day_or":true},"active":false,"max_scheduled_runs":null,"parameters":{},"slug":null}],"paused":true}`},
		},
		{
			name: "set_schedule active", op: OpDeploymentSetSchedule, params: map[string]string{"deployment_id": depID, "status": "active"},
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 200, json.RawMessage(depDoc(`[`+strings.Replace(sched, `"active":true`, `"active":false`, 1)+`]`)))
				f.Handle("PATCH /deployments/{id}", noContent)
			},
			result: `{"success":1}`, calls: []string{"GET /deployments/" + depID, "PATCH /deployments/" + depID},
			check: func(t *testing.T, calls []prefecttest.Call) {
				b := calls[1].JSON(t)
				if b["paused"] != false || b["schedules"].([]any)[0].(map[string]any)["active"] != true {
					t.Errorf("body %s", calls[1].Body)
				}
			},
		},
		{
			name: "set_schedule without schedules does nothing", op: OpDeploymentSetSchedule, params: map[string]string{"deployment_id": depID, "status": "inactive"},
			setup:  func(f *prefecttest.Server) { f.JSON("GET /deployments/{id}", 200, json.RawMessage(depDoc(`[]`))) },
			result: `{"success":1}`, calls: []string{"GET /deployments/" + depID},
		},
		{
			name: "set_schedule: unknown deployment", op: OpDeploymentSetSchedule, params: map[string]string{"deployment_id": depID, "status": "active"},
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /deployments/{id}", 404, map[string]string{"detail": "Deployment not found"})
			},
			status: 400, detail: "failed to set schedule", calls: []string{"GET /deployments/" + depID},
		},
	})
}

func TestRunFlowRuns(t *testing.T) {
	t.Parallel()
	dep := map[string]string{"deployment_id": depID}
	run := map[string]string{"flow_run_id": runID}
	created := map[string]any{"id": runID, "name": "glossy-bittern", "state": map[string]string{"type": "SCHEDULED"}}
	stateIs := func(st string) func(f *prefecttest.Server) {
		return func(f *prefecttest.Server) {
			f.JSON("GET /flow_runs/{id}", 200, map[string]any{"id": runID, "state_type": st})
			f.JSON("POST /flow_runs/{id}/set_state", 201, map[string]any{"status": "REJECT"})
		}
	}
	scheduledAt := func(t *testing.T, c prefecttest.Call) time.Time {
		t.Helper()
		b := c.JSON(t)
		s, _ := b["state"].(map[string]any)["state_details"].(map[string]any)["scheduled_time"].(string)
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("scheduled_time %q: %v", s, err)
		}
		return at
	}
	runCases(t, []runCase{
		{
			name: "create run with the job id as idempotency key", op: OpFlowRunCreate, params: dep, jobID: "job-1",
			body:   `{"config":{"tasks":[1]}}`,
			setup:  func(f *prefecttest.Server) { f.JSON("POST /deployments/{id}/create_flow_run", 201, created) },
			result: `{"flow_run_id":"` + runID + `","name":"glossy-bittern"}`,
			calls:  []string{"POST /deployments/" + depID + "/create_flow_run"},
			check: func(t *testing.T, calls []prefecttest.Call) {
				b := calls[0].JSON(t)
				at := scheduledAt(t, calls[0])
				delete(b["state"].(map[string]any), "state_details")
				got, _ := json.Marshal(b)
				if !jsonEqual(t, got, `{"parameters":{"config":{"tasks":[1]}},"context":{},"state":{"type":"SCHEDULED","name":"Scheduled"},"tags":[],"idempotency_key":"job-1","labels":{}}`) {
					t.Errorf("body %s", calls[0].Body)
				}
				if d := time.Since(at); d < 0 || d > 5*time.Second {
					t.Errorf("scheduled_time %v is not now", at)
				}
			},
		},
		{
			name: "create run: big integers reach Prefect intact", op: OpFlowRunCreate, params: dep, jobID: "job-big",
			body:   `{"config":{"n":12345678901234567890,"f":0.1}}`,
			setup:  func(f *prefecttest.Server) { f.JSON("POST /deployments/{id}/create_flow_run", 201, created) },
			result: `{"flow_run_id":"` + runID + `","name":"glossy-bittern"}`,
			calls:  []string{"POST /deployments/" + depID + "/create_flow_run"},
			check: func(t *testing.T, calls []prefecttest.Call) {
				if !strings.Contains(string(calls[0].Body), `"parameters":{"config":{"f":0.1,"n":12345678901234567890}}`) {
					t.Errorf("body %s", calls[0].Body)
				}
			},
		},
		{
			name: "create run: no body", op: OpFlowRunCreate, params: dep, jobID: "job-2",
			setup:  func(f *prefecttest.Server) { f.JSON("POST /deployments/{id}/create_flow_run", 201, created) },
			result: `{"flow_run_id":"` + runID + `","name":"glossy-bittern"}`,
			calls:  []string{"POST /deployments/" + depID + "/create_flow_run"},
			check: func(t *testing.T, calls []prefecttest.Call) {
				if b := calls[0].JSON(t); fmt.Sprint(b["parameters"]) != "map[]" {
					t.Errorf("parameters %v", b["parameters"])
				}
			},
		},
		{
			name: "create run: schema violation is the route's 400", op: OpFlowRunCreate, params: dep, jobID: "job-3",
			setup: func(f *prefecttest.Server) {
				f.JSON("POST /deployments/{id}/create_flow_run", 409, map[string]string{"detail": "Error creating flow run: Validation failed"})
			},
			status: 400, detail: "failed to create flow_run for deployment", calls: []string{"POST /deployments/" + depID + "/create_flow_run"},
		},
		{
			name: "create run: unknown deployment", op: OpFlowRunCreate, params: dep, jobID: "job-4",
			setup: func(f *prefecttest.Server) {
				f.JSON("POST /deployments/{id}/create_flow_run", 404, map[string]string{"detail": "Deployment not found"})
			},
			status: 400, detail: "failed to create flow_run for deployment", calls: []string{"POST /deployments/" + depID + "/create_flow_run"},
		},
		{
			name: "create run: a 500 is retried in place then left to the job", op: OpFlowRunCreate, params: dep, jobID: "job-5",
			setup: func(f *prefecttest.Server) {
				f.JSON("POST /deployments/{id}/create_flow_run", 500, map[string]string{"exception_message": "Internal Server Error"})
			},
			retryable: true,
			calls:     []string{"POST /deployments/" + depID + "/create_flow_run", "POST /deployments/" + depID + "/create_flow_run", "POST /deployments/" + depID + "/create_flow_run"},
			check: func(t *testing.T, calls []prefecttest.Call) {
				for _, c := range calls {
					if c.JSON(t)["idempotency_key"] != "job-5" {
						t.Errorf("attempt without the idempotency key: %s", c.Body)
					}
				}
			},
		},
		{
			name: "schedule run at the given time", op: OpFlowRunSchedule, params: dep, jobID: "job-6",
			body:   `{"runParams":{"config":{}},"scheduledTime":"2030-01-02T03:04:05+01:00"}`,
			setup:  func(f *prefecttest.Server) { f.JSON("POST /deployments/{id}/create_flow_run", 201, created) },
			result: `{"flow_run_id":"` + runID + `","name":"glossy-bittern"}`,
			calls:  []string{"POST /deployments/" + depID + "/create_flow_run"},
			check: func(t *testing.T, calls []prefecttest.Call) {
				if at := scheduledAt(t, calls[0]); !at.Equal(time.Date(2030, 1, 2, 2, 4, 5, 0, time.UTC)) {
					t.Errorf("scheduled_time %v", at)
				}
			},
		},
		{
			name: "delete run", op: OpFlowRunDelete, params: run,
			setup: func(f *prefecttest.Server) {
				f.Handle("DELETE /flow_runs/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
			},
			result: `{"success":1}`, calls: []string{"DELETE /flow_runs/" + runID},
		},
		{
			name: "delete run: unknown", op: OpFlowRunDelete, params: run,
			setup: func(f *prefecttest.Server) {
				f.JSON("DELETE /flow_runs/{id}", 404, map[string]string{"detail": "Flow run not found"})
			},
			status: 400, detail: "failed to fetch flow_run " + runID, calls: []string{"DELETE /flow_runs/" + runID},
		},
		{
			name: "delete run: gone on a retried attempt is done", op: OpFlowRunDelete, params: run, attempt: 2,
			setup: func(f *prefecttest.Server) {
				f.JSON("DELETE /flow_runs/{id}", 404, map[string]string{"detail": "Flow run not found"})
			},
			result: `{"success":1}`, calls: []string{"DELETE /flow_runs/" + runID},
		},
		{
			name: "retry run", op: OpFlowRunRetry, params: run, body: `{"minutes":5}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("POST /flow_runs/{id}/set_state", 201, map[string]any{"status": "ACCEPT"})
			},
			result: `{"success":1}`, calls: []string{"POST /flow_runs/" + runID + "/set_state"},
			check: func(t *testing.T, calls []prefecttest.Call) {
				at := scheduledAt(t, calls[0])
				if d := time.Until(at) - 5*time.Minute; d > time.Second || d < -5*time.Second {
					t.Errorf("scheduled_time %v", at)
				}
				b := calls[0].JSON(t)
				delete(b["state"].(map[string]any), "state_details")
				got, _ := json.Marshal(b)
				if !jsonEqual(t, got, `{"force":true,"state":{"name":"AwaitingRetry","message":"Retry via prefect proxy","type":"SCHEDULED"}}`) {
					t.Errorf("body %s", calls[0].Body)
				}
			},
		},
		{
			name: "retry run: rejection is ignored", op: OpFlowRunRetry, params: run, body: `{"minutes":0}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("POST /flow_runs/{id}/set_state", 200, map[string]any{"status": "REJECT"})
			},
			result: `{"success":1}`, calls: []string{"POST /flow_runs/" + runID + "/set_state"},
		},
		{
			name: "retry run: unknown", op: OpFlowRunRetry, params: run, body: `{"minutes":5}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("POST /flow_runs/{id}/set_state", 404, map[string]string{"exception_message": "Flow run not found"})
			},
			status: 400, detail: "failed to fetch flow_run " + runID, calls: []string{"POST /flow_runs/" + runID + "/set_state"},
		},
		{
			name: "cancel a scheduled run", op: OpFlowRunCancel, params: run,
			body:   `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`,
			setup:  stateIs("SCHEDULED"),
			result: `{"success":1}`, calls: []string{"GET /flow_runs/" + runID, "POST /flow_runs/" + runID + "/set_state"},
			bodies: map[int]string{1: `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`},
		},
		{
			name: "cancel a pending run", op: OpFlowRunCancel, params: run,
			body:   `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"False"}`,
			setup:  stateIs("PENDING"),
			result: `{"success":1}`, calls: []string{"GET /flow_runs/" + runID, "POST /flow_runs/" + runID + "/set_state"},
		},
		{
			name: "cancel: a retried attempt finds its own CANCELLING", op: OpFlowRunCancel, params: run, attempt: 2,
			body:   `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`,
			setup:  stateIs("CANCELLING"),
			result: `{"success":1}`, calls: []string{"GET /flow_runs/" + runID},
		},
		{
			name: "cancel: a run already cancelling on the first attempt is the 400", op: OpFlowRunCancel, params: run, attempt: 1,
			body:   `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`,
			setup:  stateIs("CANCELLING"),
			status: 400, detail: "failed to cancel the queued manual job", calls: []string{"GET /flow_runs/" + runID},
		},
		{
			name: "a running run is not cancelled", op: OpFlowRunCancel, params: run,
			body:   `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`,
			setup:  stateIs("RUNNING"),
			status: 400, detail: "failed to cancel the queued manual job", calls: []string{"GET /flow_runs/" + runID},
		},
		{
			name: "a finished run is never overwritten", op: OpFlowRunCancel, params: run,
			body:   `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`,
			setup:  stateIs("COMPLETED"),
			status: 400, detail: "failed to cancel the queued manual job", calls: []string{"GET /flow_runs/" + runID},
		},
		{
			name: "cancel: unknown run", op: OpFlowRunCancel, params: run,
			body: `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /flow_runs/{id}", 404, map[string]string{"detail": "Flow run not found"})
			},
			status: 400, detail: "failed to cancel the queued manual job", calls: []string{"GET /flow_runs/" + runID},
		},
		{
			name: "cancel: set_state 503 is retryable", op: OpFlowRunCancel, params: run,
			body: `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`,
			setup: func(f *prefecttest.Server) {
				f.JSON("GET /flow_runs/{id}", 200, map[string]any{"state_type": "SCHEDULED"})
				f.JSON("POST /flow_runs/{id}/set_state", 503, map[string]string{"exception_message": "Service Unavailable"})
			},
			retryable: true, calls: []string{"GET /flow_runs/" + runID, "POST /flow_runs/" + runID + "/set_state"},
		},
	})
}

func TestRunTransportErrorIsRetryable(t *testing.T) {
	t.Parallel()
	f, s := testService(t)
	f.Close() // Prefect unreachable
	o := writeOps()[OpFlowRunDelete]
	raw, _ := json.Marshal(FlowRunPayload{FlowRunID: runID})
	_, err := o.Run(context.Background(), s, raw, Job{Key: "j"})
	var te *prefect.TransportError
	if !errors.As(err, &te) || !prefect.Retryable(err) {
		t.Fatalf("want a retryable transport error, got %v", err)
	}
}

func TestFlowNameOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"proxy/prefect_flows_runner.py:deployment_schedule_flow_v5": "deployment-schedule-flow-v5",
		"flows.py:my_flow": "my-flow",
		"noentry":          "noentry",
	} {
		if got := flowNameOf(in); got != want {
			t.Errorf("flowNameOf(%q) = %q, want %q", in, got, want)
		}
	}
}
