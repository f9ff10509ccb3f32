package proxy

// Flow-run writes (routes 23, 24, 31, 32, 36).

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
)

const (
	msgFlowRunCreate = "failed to create flow_run for deployment"
	msgCancelQueued  = "failed to cancel the queued manual job"
)

// msgFlowRun is routes 23 and 24's message (sic: "fetch").
func msgFlowRun(id string) string { return "failed to fetch flow_run " + id }

// ---- decode ----------------------------------------------------------------

// FlowRunCreatePayload is the job payload of routes 31 and 32.
type FlowRunCreatePayload struct {
	DeploymentID  string         `json:"deployment_id"` // canonical UUID
	Params        map[string]any `json:"params"`
	ScheduledTime *time.Time     `json:"scheduled_time,omitempty"` // nil: when the job runs
}

// DecodeFlowRunCreate is route 31: an optional JSON object of parameter
// overrides (absent, null and {} are the same).
func DecodeFlowRunCreate(params map[string]string, body []byte) (FlowRunCreatePayload, error) {
	var p FlowRunCreatePayload
	obj, err := validate.Dict(body, true)
	if err != nil {
		return p, err
	}
	p.Params = obj
	return p, deploymentRef(params, &p)
}

// DecodeFlowRunSchedule is route 32 (ScheduleFlowRunRequest).
func DecodeFlowRunSchedule(params map[string]string, body []byte) (FlowRunCreatePayload, error) {
	var p FlowRunCreatePayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	p.Params, _ = c.Dict("runParams", true)
	p.ScheduledTime = c.OptDatetime("scheduledTime")
	if err := c.Err(); err != nil {
		return p, err
	}
	return p, deploymentRef(params, &p)
}

// deploymentRef checks the path id: run_deployment parsed it with
// uuid.UUID(), and took anything else for a "flow/deployment" name, which a
// single path segment can never be.
func deploymentRef(params map[string]string, p *FlowRunCreatePayload) error {
	id, err := uuid.Parse(params["deployment_id"])
	if err != nil {
		return badRequest(msgFlowRunCreate)
	}
	p.DeploymentID = id.String()
	if p.Params == nil {
		p.Params = map[string]any{}
	}
	return nil
}

// FlowRunPayload is route 23's job payload.
type FlowRunPayload struct {
	FlowRunID string `json:"flow_run_id"`
}

func DecodeFlowRunDelete(params map[string]string, _ []byte) (FlowRunPayload, error) {
	id := params["flow_run_id"]
	if !validate.UUIDPath(id) {
		return FlowRunPayload{}, badRequest("%s", msgFlowRun(id))
	}
	return FlowRunPayload{FlowRunID: id}, nil
}

// FlowRunRetryPayload is route 24's job payload. It holds the minutes, not
// a time: a payload must be the same for the same request, because the job
// system fingerprints it to recognise a repeated Idempotency-Key.
type FlowRunRetryPayload struct {
	FlowRunID string `json:"flow_run_id"`
	Minutes   int64  `json:"minutes"`
}

func DecodeFlowRunRetry(params map[string]string, body []byte) (FlowRunRetryPayload, error) {
	var p FlowRunRetryPayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	p.Minutes = c.Int("minutes")
	if err := c.Err(); err != nil {
		return p, err
	}
	p.FlowRunID = params["flow_run_id"]
	// pendulum overflowed (inside the route's try) long before this bound.
	const maxMinutes = 1 << 30
	if !validate.UUIDPath(p.FlowRunID) || p.Minutes > maxMinutes || p.Minutes < -maxMinutes {
		return p, badRequest("%s", msgFlowRun(p.FlowRunID))
	}
	return p, nil
}

// FlowRunCancelPayload is route 36's job payload.
type FlowRunCancelPayload struct {
	FlowRunID string `json:"flow_run_id"`
	StateName string `json:"state_name"`
	Force     string `json:"force"` // Django sends str(bool); Prefect coerces it
}

func DecodeFlowRunCancel(params map[string]string, body []byte) (FlowRunCancelPayload, error) {
	var p FlowRunCancelPayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	if st := c.Model("state"); st != nil {
		p.StateName = st.Str("name", true)
		st.Literal("type", "CANCELLING")
		c.Merge(st)
	}
	p.Force = c.Str("force", true)
	if err := c.Err(); err != nil {
		return p, err
	}
	p.FlowRunID = params["flow_run_id"]
	if !validate.UUIDPath(p.FlowRunID) {
		return p, badRequest(msgCancelQueued)
	}
	return p, nil
}

// ---- run -------------------------------------------------------------------

// RunFlowRunCreate is routes 31 and 32: run_deployment(id, timeout=0). The
// job id is Prefect's idempotency_key, so a retried job never starts a
// second run: Prefect answers the first one again.
func (s *Service) RunFlowRunCreate(ctx context.Context, p FlowRunCreatePayload, j Job) (any, error) {
	at := time.Now().UTC()
	if p.ScheduledTime != nil {
		at = p.ScheduledTime.UTC()
	}
	body := map[string]any{
		"parameters": p.Params,
		"context":    map[string]any{},
		"state": map[string]any{
			"type":          "SCHEDULED",
			"name":          "Scheduled",
			"state_details": map[string]any{"scheduled_time": at.Format(time.RFC3339Nano)},
		},
		"tags":   []string{},
		"labels": map[string]any{},
	}
	if j.Key != "" {
		body["idempotency_key"] = j.Key
	}
	var run struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	path := "/deployments/" + p.DeploymentID + "/create_flow_run"
	if err := s.prefect.Do(ctx, http.MethodPost, path, body, &run, j.Key != ""); err != nil {
		return nil, translate(err, failed(msgFlowRunCreate))
	}
	return map[string]string{"flow_run_id": run.ID, "name": run.Name}, nil
}

// RunFlowRunDelete is route 23.
func (s *Service) RunFlowRunDelete(ctx context.Context, p FlowRunPayload, j Job) (any, error) {
	if err := s.prefect.Do(ctx, http.MethodDelete, "/flow_runs/"+p.FlowRunID, nil, nil, false); err != nil && !goneOnRetry(j, err) {
		return nil, translate(err, failed(msgFlowRun(p.FlowRunID)))
	}
	s.forget(ctx, p.FlowRunID)
	return successBody(), nil
}

// RunFlowRunRetry is route 24: force the run to AwaitingRetry; Prefect's
// orchestration result is ignored, as in Python.
func (s *Service) RunFlowRunRetry(ctx context.Context, p FlowRunRetryPayload, j Job) (any, error) {
	at := time.Now().UTC().Add(time.Duration(p.Minutes) * time.Minute)
	body := map[string]any{
		"force": true,
		"state": map[string]any{
			"name":          "AwaitingRetry",
			"message":       "Retry via prefect proxy",
			"type":          "SCHEDULED",
			"state_details": map[string]any{"scheduled_time": at.Format(time.RFC3339Nano)},
		},
	}
	err := s.prefect.Do(ctx, http.MethodPost, "/flow_runs/"+p.FlowRunID+"/set_state", body, nil, true)
	if err != nil {
		return nil, translate(err, failed(msgFlowRun(p.FlowRunID)))
	}
	s.forget(ctx, p.FlowRunID)
	return successBody(), nil
}

// RunFlowRunCancel is route 36: only a queued run (PENDING or SCHEDULED) is
// cancelled, and the state is read first on every attempt, so a run that
// has moved on — finished, above all — is never overwritten.
func (s *Service) RunFlowRunCancel(ctx context.Context, p FlowRunCancelPayload, j Job) (any, error) {
	var run struct {
		StateType string `json:"state_type"`
	}
	path := "/flow_runs/" + p.FlowRunID
	if err := s.prefect.Get(ctx, path, &run); err != nil {
		return nil, translate(err, failed(msgCancelQueued))
	}
	if run.StateType == "CANCELLING" && j.Attempt > 1 {
		// This job's earlier attempt set it and lost the answer.
		return successBody(), nil
	}
	if run.StateType != "PENDING" && run.StateType != "SCHEDULED" {
		return nil, badRequest(msgCancelQueued)
	}
	body := map[string]any{
		"state": map[string]string{"name": p.StateName, "type": "CANCELLING"},
		"force": p.Force,
	}
	if err := s.prefect.Do(ctx, http.MethodPost, path+"/set_state", body, nil, false); err != nil {
		return nil, translate(err, failed(msgCancelQueued))
	}
	return successBody(), nil
}
