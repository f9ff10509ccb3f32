package proxy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

const (
	runID = "0b6f6a7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
	depID = "5f0e3c1a-2b4d-4c6e-9f80-a1b2c3d4e5f6"
)

// Expected outcomes come from running the Python proxy's schemas under
// fastapi 0.136.3 / pydantic 2.13.4 (the "input"/"ctx" keys, which Django
// never reads, are not reproduced).
func TestDecode(t *testing.T) {
	t.Parallel()
	dep := map[string]string{"deployment_id": depID}
	run := map[string]string{"flow_run_id": runID}
	cases := []struct {
		name    string
		op      string
		params  map[string]string
		body    string
		status  int    // 0: success
		want    string // error body, or the payload on success ("" to skip)
		payload func(t *testing.T, raw []byte)
	}{
		// --- request-level errors, shared by every model body
		{name: "no body is missing", op: OpAirbyteServerCreate, body: ``, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body"],"msg":"Field required"}]}`},
		{name: "null body is missing", op: OpSecretCreate, body: `null`, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body"],"msg":"Field required"}]}`},
		{name: "list body", op: OpSecretUpsert, body: `[]`, status: 422,
			want: `{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from"}]}`},
		{name: "invalid JSON gives its position", op: OpAirbyteServerCreate, body: `{bad`, status: 422,
			want: `{"detail":[{"type":"json_invalid","loc":["body",1],"msg":"JSON decode error"}]}`},
		{name: "truncated JSON ends at the body's end", op: OpSecretCreate, body: `{"secret":`, status: 422,
			want: `{"detail":[{"type":"json_invalid","loc":["body",10],"msg":"JSON decode error"}]}`},
		{name: "whitespace only is invalid JSON", op: OpSecretCreate, body: "  ", status: 422,
			want: `{"detail":[{"type":"json_invalid","loc":["body",2],"msg":"JSON decode error"}]}`},
		{name: "trailing data is invalid JSON", op: OpSecretCreate, body: `{} x`, status: 422,
			want: `{"detail":[{"type":"json_invalid","loc":["body",3],"msg":"JSON decode error"}]}`},

		// --- route 4
		{name: "airbyte server: every missing field, in order", op: OpAirbyteServerCreate, body: `{}`, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body","blockName"],"msg":"Field required"},{"type":"missing","loc":["body","serverHost"],"msg":"Field required"},{"type":"missing","loc":["body","serverPort"],"msg":"Field required"},{"type":"missing","loc":["body","apiVersion"],"msg":"Field required"}]}`},
		{name: "airbyte server: a numeric serverPort is not a str", op: OpAirbyteServerCreate,
			body: `{"blockName":"a","serverHost":"h","serverPort":8000,"apiVersion":"v1"}`, status: 422,
			want: `{"detail":[{"type":"string_type","loc":["body","serverPort"],"msg":"Input should be a valid string"}]}`},
		{name: "airbyte server: wrong types everywhere", op: OpAirbyteServerCreate,
			body: `{"blockName":null,"serverHost":true,"serverPort":[],"apiVersion":{}}`, status: 422,
			want: `{"detail":[{"type":"string_type","loc":["body","blockName"],"msg":"Input should be a valid string"},{"type":"string_type","loc":["body","serverHost"],"msg":"Input should be a valid string"},{"type":"string_type","loc":["body","serverPort"],"msg":"Input should be a valid string"},{"type":"string_type","loc":["body","apiVersion"],"msg":"Input should be a valid string"}]}`},
		{name: "airbyte server: unparsable useSSL string", op: OpAirbyteServerCreate,
			body: `{"blockName":"a","serverHost":"h","serverPort":"8000","apiVersion":"v1","useSSL":"maybe"}`, status: 422,
			want: `{"detail":[{"type":"bool_parsing","loc":["body","useSSL"],"msg":"Input should be a valid boolean, unable to interpret input"}]}`},
		{name: "airbyte server: useSSL 2", op: OpAirbyteServerCreate,
			body: `{"blockName":"a","serverHost":"h","serverPort":"8000","apiVersion":"v1","useSSL":2}`, status: 422,
			want: `{"detail":[{"type":"bool_parsing","loc":["body","useSSL"],"msg":"Input should be a valid boolean, unable to interpret input"}]}`},
		{name: "airbyte server: useSSL null", op: OpAirbyteServerCreate,
			body: `{"blockName":"a","serverHost":"h","serverPort":"8000","apiVersion":"v1","useSSL":null}`, status: 422,
			want: `{"detail":[{"type":"bool_type","loc":["body","useSSL"],"msg":"Input should be a valid boolean"}]}`},
		{name: "airbyte server: non-numeric port is the route's 400", op: OpAirbyteServerCreate,
			body: `{"blockName":"a","serverHost":"h","serverPort":"80a","apiVersion":"v1"}`, status: 400,
			want: `{"detail":"failed to create airbyte server block"}`},
		{name: "airbyte server: lax bool and int, cleaned name", op: OpAirbyteServerCreate,
			body: `{"blockName":"My_Server 1","serverHost":"h","serverPort":" 8_000 ","apiVersion":"v1","useSSL":"True"}`,
			want: `{"block_name":"myserver1","server_host":"h","server_port":8000,"api_version":"v1","use_ssl":true}`},
		{name: "airbyte server: useSSL 1.0 and default", op: OpAirbyteServerCreate,
			body: `{"blockName":"a","serverHost":"h","serverPort":"8000","apiVersion":"v1","useSSL":1.0}`,
			want: `{"block_name":"a","server_host":"h","server_port":8000,"api_version":"v1","use_ssl":true}`},

		// --- route 5
		{name: "airbyte server update: nulls and empty strings change nothing", op: OpAirbyteServerUpdate,
			body: `{"blockName":"My_Name","serverHost":"","serverPort":null,"useSSL":null}`,
			want: `{"block_name":"My_Name"}`},
		{name: "airbyte server update: every field", op: OpAirbyteServerUpdate,
			body: `{"blockName":"b","serverHost":"h","serverPort":"8001","apiVersion":"v2","username":"u","password":"p","useSSL":"no"}`,
			want: `{"block_name":"b","server_host":"h","server_port":8001,"api_version":"v2","username":"u","password":"p","use_ssl":false}`},
		{name: "airbyte server update: bad port is the route's 400", op: OpAirbyteServerUpdate,
			body: `{"blockName":"b","serverPort":"abc"}`, status: 400, want: `{"detail":"failed to update airbyte server block"}`},
		{name: "airbyte server update: blockName required", op: OpAirbyteServerUpdate, body: `{"password":5}`, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body","blockName"],"msg":"Field required"},{"type":"string_type","loc":["body","password"],"msg":"Input should be a valid string"}]}`},

		// --- route 6
		{name: "connection: extra null", op: OpAirbyteConnectionUpsert,
			body: `{"serverBlockName":"a","connectionId":"x","connectionBlockName":"c","extra":null}`, status: 422,
			want: `{"detail":[{"type":"dict_type","loc":["body","extra"],"msg":"Input should be a valid dictionary"}]}`},
		{name: "connection: non-UUID connectionId is the route's 400", op: OpAirbyteConnectionUpsert,
			body: `{"serverBlockName":"a","connectionId":"x","connectionBlockName":"c"}`, status: 400,
			want: `{"detail":"failed to upsert airbyte connection block"}`},
		{name: "connection: UUID normalised, names as given, defaults", op: OpAirbyteConnectionUpsert,
			body: `{"serverBlockName":"Srv","connectionId":"{AB3E4C1A-2B4D-4C6E-9F80-A1B2C3D4E5F6}","connectionBlockName":"Conn_1"}`,
			want: `{"server_block_name":"Srv","connection_id":"ab3e4c1a-2b4d-4c6e-9f80-a1b2c3d4e5f6","connection_block_name":"Conn_1","connection_name":"","extra":{}}`},

		// --- routes 9, 10
		{name: "secret: numeric blockName", op: OpSecretCreate, body: `{"secret":"s","blockName":5}`, status: 422,
			want: `{"detail":[{"type":"string_type","loc":["body","blockName"],"msg":"Input should be a valid string"}]}`},
		{name: "secret: object secret", op: OpSecretUpsert, body: `{"secret":{"a":1},"blockName":"x"}`, status: 422,
			want: `{"detail":[{"type":"string_type","loc":["body","secret"],"msg":"Input should be a valid string"}]}`},
		{name: "secret: cleaned name", op: OpSecretUpsert, body: `{"secret":"tok","blockName":"Org/Git PAT"}`,
			want: `{"block_name":"orggitpat","secret":"tok"}`},

		// --- route 11
		{name: "delete block: non-UUID id is Prefect's 404 text", op: OpBlockDelete, params: map[string]string{"block_id": "abc"},
			status: 400, want: `{"detail":"{\"detail\":\"Not Found\"}"}`},
		{name: "delete block", op: OpBlockDelete, params: map[string]string{"block_id": depID}, want: `{"block_id":"` + depID + `"}`},

		// --- route 14
		{name: "deployment: params null and cron number", op: OpDeploymentCreate,
			body: `{"flow_name":"f","deployment_name":"d","org_slug":"o","deployment_params":null,"cron":5}`, status: 422,
			want: `{"detail":[{"type":"dict_type","loc":["body","deployment_params"],"msg":"Input should be a valid dictionary"},{"type":"string_type","loc":["body","cron"],"msg":"Input should be a valid string"}]}`},
		{name: "deployment: flow_name required though ignored", op: OpDeploymentCreate,
			body: `{"deployment_name":"d","org_slug":"o","deployment_params":{}}`, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body","flow_name"],"msg":"Field required"}]}`},
		{name: "deployment: defaults left to the service", op: OpDeploymentCreate,
			body: `{"flow_name":"f","deployment_name":"d","org_slug":"o","deployment_params":{"config":{"n":12345678901234567890}},"cron":null}`,
			want: `{"deployment_name":"d","org_slug":"o","params":{"config":{"n":12345678901234567890}}}`},

		// --- route 15
		{name: "update: deployment_params null", op: OpDeploymentUpdate, params: dep, body: `{"deployment_params":null}`, status: 422,
			want: `{"detail":[{"type":"dict_type","loc":["body","deployment_params"],"msg":"Input should be a valid dictionary"}]}`},
		{name: "update: empty body changes nothing", op: OpDeploymentUpdate, params: dep, body: `{}`,
			want: `{"deployment_id":"` + depID + `"}`},
		{name: "update: explicit null cron, unknown keys ignored", op: OpDeploymentUpdate, params: dep, body: `{"cron":null,"extra":1}`,
			want: `{"deployment_id":"` + depID + `","cron_set":true}`},
		{name: "update: Django's body", op: OpDeploymentUpdate, params: dep, body: `{"cron":"0 1 * * *","deployment_params":{"config":{}},"work_pool_name":"p","work_queue_name":""}`,
			want: `{"deployment_id":"` + depID + `","params_set":true,"params":{"config":{}},"cron_set":true,"cron":"0 1 * * *","work_pool":"p"}`},
		{name: "update: non-UUID id is the route's 400", op: OpDeploymentUpdate, params: map[string]string{"deployment_id": "x"}, body: `{}`,
			status: 400, want: `{"detail":"failed to update the deployment"}`},
		{name: "update: body errors come before the id", op: OpDeploymentUpdate, params: map[string]string{"deployment_id": "x"}, body: `[]`,
			status: 422, want: `{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from"}]}`},

		// --- route 16
		{name: "entrypoint: no body", op: OpDeploymentEntrypoint, params: dep, body: ``, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body"],"msg":"Field required"}]}`},
		{name: "entrypoint: list body", op: OpDeploymentEntrypoint, params: dep, body: `[]`, status: 422,
			want: `{"detail":[{"type":"dict_type","loc":["body"],"msg":"Input should be a valid dictionary"}]}`},
		{name: "entrypoint: missing key", op: OpDeploymentEntrypoint, params: dep, body: `{}`, status: 400,
			want: `{"detail":"entrypoint (string) is required"}`},
		{name: "entrypoint: not a string", op: OpDeploymentEntrypoint, params: dep, body: `{"entrypoint":1}`, status: 400,
			want: `{"detail":"entrypoint (string) is required"}`},
		{name: "entrypoint: empty", op: OpDeploymentEntrypoint, params: dep, body: `{"entrypoint":""}`, status: 400,
			want: `{"detail":"entrypoint (string) is required"}`},
		{name: "entrypoint: bad id", op: OpDeploymentEntrypoint, params: map[string]string{"deployment_id": "x"}, body: `{"entrypoint":"a:b"}`,
			status: 400, want: `{"detail":"failed to update deployment entrypoint"}`},
		{name: "entrypoint", op: OpDeploymentEntrypoint, params: dep, body: `{"entrypoint":"a.py:f"}`,
			want: `{"deployment_id":"` + depID + `","entrypoint":"a.py:f"}`},

		// --- route 30
		{name: "delete deployment: bad id", op: OpDeploymentDelete, params: map[string]string{"deployment_id": "nope"},
			status: 400, want: `{"detail":"{\"detail\":\"Not Found\"}"}`},

		// --- route 33
		{name: "set_schedule: bad status is a 422 string detail", op: OpDeploymentSetSchedule,
			params: map[string]string{"deployment_id": "x", "status": "paused"}, status: 422, want: `{"detail":"incorrect status value"}`},
		{name: "set_schedule: bad id", op: OpDeploymentSetSchedule,
			params: map[string]string{"deployment_id": "x", "status": "active"}, status: 400, want: `{"detail":"failed to set schedule"}`},
		{name: "set_schedule: body ignored", op: OpDeploymentSetSchedule, body: `not json`,
			params: map[string]string{"deployment_id": depID, "status": "inactive"}, want: `{"deployment_id":"` + depID + `","active":false}`},

		// --- route 31
		{name: "flow run: no body", op: OpFlowRunCreate, params: dep, body: ``,
			want: `{"deployment_id":"` + depID + `","params":{}}`},
		{name: "flow run: null body", op: OpFlowRunCreate, params: dep, body: `null`,
			want: `{"deployment_id":"` + depID + `","params":{}}`},
		{name: "flow run: list body", op: OpFlowRunCreate, params: dep, body: `[]`, status: 422,
			want: `{"detail":[{"type":"dict_type","loc":["body"],"msg":"Input should be a valid dictionary"}]}`},
		{name: "flow run: string body", op: OpFlowRunCreate, params: dep, body: `"s"`, status: 422,
			want: `{"detail":[{"type":"dict_type","loc":["body"],"msg":"Input should be a valid dictionary"}]}`},
		{name: "flow run: overrides kept", op: OpFlowRunCreate, params: map[string]string{"deployment_id": strings.ToUpper(depID)},
			body: `{"config":{"tasks":[{"slug":"x"}]}}`,
			want: `{"deployment_id":"` + depID + `","params":{"config":{"tasks":[{"slug":"x"}]}}}`},
		{name: "flow run: non-UUID deployment", op: OpFlowRunCreate, params: map[string]string{"deployment_id": "flow-dep"},
			status: 400, want: `{"detail":"failed to create flow_run for deployment"}`},

		// --- route 32
		{name: "schedule: runParams list", op: OpFlowRunSchedule, params: dep, body: `{"runParams":[]}`, status: 422,
			want: `{"detail":[{"type":"dict_type","loc":["body","runParams"],"msg":"Input should be a valid dictionary"}]}`},
		{name: "schedule: runParams required", op: OpFlowRunSchedule, params: dep, body: `{}`, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body","runParams"],"msg":"Field required"}]}`},
		{name: "schedule: bool scheduledTime", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{},"scheduledTime":true}`, status: 422,
			want: `{"detail":[{"type":"datetime_type","loc":["body","scheduledTime"],"msg":"Input should be a valid datetime"}]}`},
		{name: "schedule: bad scheduledTime", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{},"scheduledTime":"bad"}`, status: 422,
			want: `{"detail":[{"type":"datetime_from_date_parsing","loc":["body","scheduledTime"],"msg":"Input should be a valid datetime or date, input is too short"}]}`},
		{name: "schedule: offset time", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{"a":1},"scheduledTime":"2026-01-02 03:04:05+05:30"}`,
			want: `{"deployment_id":"` + depID + `","params":{"a":1},"scheduled_time":"2026-01-01T21:34:05Z"}`},
		{name: "schedule: naive time is UTC", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{},"scheduledTime":"2026-01-02T03:04"}`,
			want: `{"deployment_id":"` + depID + `","params":{},"scheduled_time":"2026-01-02T03:04:00Z"}`},
		{name: "schedule: date only", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{},"scheduledTime":"2026-01-02"}`,
			want: `{"deployment_id":"` + depID + `","params":{},"scheduled_time":"2026-01-02T00:00:00Z"}`},
		{name: "schedule: unix seconds", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{},"scheduledTime":1700000000}`,
			want: `{"deployment_id":"` + depID + `","params":{},"scheduled_time":"2023-11-14T22:13:20Z"}`},
		{name: "schedule: unix milliseconds as string", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{},"scheduledTime":"1700000000123"}`,
			want: `{"deployment_id":"` + depID + `","params":{},"scheduled_time":"2023-11-14T22:13:20.123Z"}`},
		{name: "schedule: null time", op: OpFlowRunSchedule, params: dep, body: `{"runParams":{},"scheduledTime":null}`,
			want: `{"deployment_id":"` + depID + `","params":{}}`},

		// --- route 23
		{name: "delete run: bad id", op: OpFlowRunDelete, params: map[string]string{"flow_run_id": "r1"},
			status: 400, want: `{"detail":"failed to fetch flow_run r1"}`},
		{name: "delete run", op: OpFlowRunDelete, params: run, want: `{"flow_run_id":"` + runID + `"}`},

		// --- route 24
		{name: "retry: float minutes", op: OpFlowRunRetry, params: run, body: `{"minutes":5.5}`, status: 422,
			want: `{"detail":[{"type":"int_from_float","loc":["body","minutes"],"msg":"Input should be a valid integer, got a number with a fractional part"}]}`},
		{name: "retry: null minutes", op: OpFlowRunRetry, params: run, body: `{"minutes":null}`, status: 422,
			want: `{"detail":[{"type":"int_type","loc":["body","minutes"],"msg":"Input should be a valid integer"}]}`},
		{name: "retry: word minutes", op: OpFlowRunRetry, params: run, body: `{"minutes":"abc"}`, status: 422,
			want: `{"detail":[{"type":"int_parsing","loc":["body","minutes"],"msg":"Input should be a valid integer, unable to parse string as an integer"}]}`},
		{name: "retry: bad id", op: OpFlowRunRetry, params: map[string]string{"flow_run_id": "r1"}, body: `{"minutes":5}`,
			status: 400, want: `{"detail":"failed to fetch flow_run r1"}`},
		{name: "retry: string minutes", op: OpFlowRunRetry, params: run, body: `{"minutes":"5"}`,
			want: `{"flow_run_id":"` + runID + `","minutes":5}`},
		{name: "retry: true is one minute", op: OpFlowRunRetry, params: run, body: `{"minutes":true}`,
			want: `{"flow_run_id":"` + runID + `","minutes":1}`},
		{name: "retry: 1e2", op: OpFlowRunRetry, params: run, body: `{"minutes":1e2}`,
			want: `{"flow_run_id":"` + runID + `","minutes":100}`},

		// --- route 36
		{name: "cancel: JSON bool force", op: OpFlowRunCancel, params: run,
			body: `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":true}`, status: 422,
			want: `{"detail":[{"type":"string_type","loc":["body","force"],"msg":"Input should be a valid string"}]}`},
		{name: "cancel: type must be CANCELLING", op: OpFlowRunCancel, params: run,
			body: `{"state":{"name":"Cancelling","type":"CANCELLED"},"force":"True"}`, status: 422,
			want: `{"detail":[{"type":"literal_error","loc":["body","state","type"],"msg":"Input should be 'CANCELLING'"}]}`},
		{name: "cancel: state not an object", op: OpFlowRunCancel, params: run, body: `{"state":"x","force":"True"}`, status: 422,
			want: `{"detail":[{"type":"model_attributes_type","loc":["body","state"],"msg":"Input should be a valid dictionary or object to extract fields from"}]}`},
		{name: "cancel: empty state", op: OpFlowRunCancel, params: run, body: `{"state":{},"force":"True"}`, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body","state","name"],"msg":"Field required"},{"type":"missing","loc":["body","state","type"],"msg":"Field required"}]}`},
		{name: "cancel: nothing", op: OpFlowRunCancel, params: run, body: `{}`, status: 422,
			want: `{"detail":[{"type":"missing","loc":["body","state"],"msg":"Field required"},{"type":"missing","loc":["body","force"],"msg":"Field required"}]}`},
		{name: "cancel: bad id", op: OpFlowRunCancel, params: map[string]string{"flow_run_id": "x"},
			body: `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"True"}`, status: 400,
			want: `{"detail":"failed to cancel the queued manual job"}`},
		{name: "cancel: Django's body", op: OpFlowRunCancel, params: run,
			body: `{"state":{"name":"Cancelling","type":"CANCELLING"},"force":"False"}`,
			want: `{"flow_run_id":"` + runID + `","state_name":"Cancelling","force":"False"}`},
	}
	ops := writeOps()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, ok := ops[tc.op]
			if !ok {
				t.Fatalf("no op %q", tc.op)
			}
			p, err := o.Decode(tc.params, []byte(tc.body))
			if tc.status != 0 {
				var ae *apperr.Error
				if err == nil || !errors.As(err, &ae) {
					t.Fatalf("want %d, got payload %v err %v", tc.status, p, err)
				}
				body, _ := json.Marshal(ae.Body())
				if ae.Status() != tc.status || !jsonEqual(t, body, tc.want) {
					t.Fatalf("got %d %s\nwant %d %s", ae.Status(), body, tc.status, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			raw, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			// The job system fingerprints payloads to recognise a repeated
			// Idempotency-Key: the same request must give the same bytes.
			again, _ := o.Decode(tc.params, []byte(tc.body))
			if raw2, _ := json.Marshal(again); string(raw2) != string(raw) {
				t.Fatalf("payload not deterministic:\n%s\n%s", raw, raw2)
			}
			if tc.want != "" && !jsonEqual(t, raw, tc.want) {
				t.Fatalf("payload %s\nwant    %s", raw, tc.want)
			}
			if tc.payload != nil {
				tc.payload(t, raw)
			}
		})
	}
}
