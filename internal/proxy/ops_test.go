package proxy

import (
	"bytes"
	"context"
	"encoding/json"
)

// Op kinds as internal/writes names them; the tests here look ops up by them.
const (
	OpAirbyteServerCreate     = "block:airbyte-server:create"
	OpAirbyteServerUpdate     = "block:airbyte-server:update"
	OpAirbyteConnectionUpsert = "block:airbyte-connection:upsert"
	OpSecretCreate            = "block:secret:create"
	OpSecretUpsert            = "block:secret:upsert"
	OpBlockDelete             = "block:delete"
	OpDeploymentCreate        = "deployment:create"
	OpDeploymentUpdate        = "deployment:update"
	OpDeploymentEntrypoint    = "deployment:entrypoint"
	OpDeploymentDelete        = "deployment:delete"
	OpDeploymentSetSchedule   = "deployment:set-schedule"
	OpFlowRunCreate           = "flowrun:create"
	OpFlowRunSchedule         = "flowrun:schedule"
	OpFlowRunDelete           = "flowrun:delete"
	OpFlowRunRetry            = "flowrun:retry"
	OpFlowRunCancel           = "flowrun:cancel"
)

// testOp is a write op as the job system runs it: Decode in the api, the
// payload through JSON (it is sealed into Redis), Run in a worker.
type testOp struct {
	Decode func(params map[string]string, body []byte) (any, error)
	Run    func(ctx context.Context, s *Service, raw json.RawMessage, j Job) (any, error)
}

func bind[P any](decode func(map[string]string, []byte) (P, error),
	run func(*Service, context.Context, P, Job) (any, error)) testOp {
	return testOp{
		Decode: func(params map[string]string, body []byte) (any, error) { return decode(params, body) },
		Run: func(ctx context.Context, s *Service, raw json.RawMessage, j Job) (any, error) {
			var p P
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&p); err != nil {
				return nil, err
			}
			return run(s, ctx, p, j)
		},
	}
}

func writeOps() map[string]testOp {
	return map[string]testOp{
		OpAirbyteServerCreate:     bind(DecodeAirbyteServerCreate, (*Service).RunAirbyteServerCreate),
		OpAirbyteServerUpdate:     bind(DecodeAirbyteServerUpdate, (*Service).RunAirbyteServerUpdate),
		OpAirbyteConnectionUpsert: bind(DecodeAirbyteConnection, (*Service).RunAirbyteConnection),
		OpSecretCreate:            bind(DecodeSecret, (*Service).RunSecretCreate),
		OpSecretUpsert:            bind(DecodeSecret, (*Service).RunSecretUpsert),
		OpBlockDelete:             bind(DecodeBlockDelete, (*Service).RunBlockDelete),
		OpDeploymentCreate:        bind(DecodeDeploymentCreate, (*Service).RunDeploymentCreate),
		OpDeploymentUpdate:        bind(DecodeDeploymentUpdate, (*Service).RunDeploymentUpdate),
		OpDeploymentEntrypoint:    bind(DecodeEntrypoint, (*Service).RunEntrypoint),
		OpDeploymentDelete:        bind(DecodeDeploymentDelete, (*Service).RunDeploymentDelete),
		OpDeploymentSetSchedule:   bind(DecodeSetSchedule, (*Service).RunSetSchedule),
		OpFlowRunCreate:           bind(DecodeFlowRunCreate, (*Service).RunFlowRunCreate),
		OpFlowRunSchedule:         bind(DecodeFlowRunSchedule, (*Service).RunFlowRunCreate),
		OpFlowRunDelete:           bind(DecodeFlowRunDelete, (*Service).RunFlowRunDelete),
		OpFlowRunRetry:            bind(DecodeFlowRunRetry, (*Service).RunFlowRunRetry),
		OpFlowRunCancel:           bind(DecodeFlowRunCancel, (*Service).RunFlowRunCancel),
	}
}
