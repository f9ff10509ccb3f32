package proxy

// Deployment writes (routes 14, 15, 16, 30, 33). Route 14 posts the
// deployment Prefect's flow.from_source(...).deploy() would create
// without cloning or importing anything.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
)

const (
	msgDeploymentCreate = "failed to create deployment"
	msgDeploymentUpdate = "failed to update the deployment"
	msgEntrypoint       = "failed to update deployment entrypoint"
	msgSetSchedule      = "failed to set schedule"
)

// parameterSchema is the OpenAPI schema Prefect generates for the runner
// flow's signature (config: dict, dbt_blocks: list | None = None,
// airbyte_blocks: list | None = None), as deploy() sends it.
const parameterSchema = `{"title": "Parameters", "type": "object", "properties": {"config": {"additionalProperties": true, "position": 0, "title": "config", "type": "object"}, "dbt_blocks": {"anyOf": [{"items": {}, "type": "array"}, {"type": "null"}], "default": null, "position": 1, "title": "dbt_blocks"}, "airbyte_blocks": {"anyOf": [{"items": {}, "type": "array"}, {"type": "null"}], "default": null, "position": 2, "title": "airbyte_blocks"}}, "required": ["config"]}`

// ---- decode ----------------------------------------------------------------

// DeploymentCreatePayload is route 14's job payload.
type DeploymentCreatePayload struct {
	DeploymentName string         `json:"deployment_name"`
	OrgSlug        string         `json:"org_slug"`
	Params         map[string]any `json:"params"`
	Cron           string         `json:"cron,omitempty"`       // empty: no schedule
	WorkQueue      string         `json:"work_queue,omitempty"` // empty: the default
	WorkPool       string         `json:"work_pool,omitempty"`  // empty: the default
}

func DecodeDeploymentCreate(_ map[string]string, body []byte) (DeploymentCreatePayload, error) {
	var p DeploymentCreatePayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	c.Str("flow_name", true) // required, then ignored, as in Python
	p.DeploymentName = c.Str("deployment_name", true)
	p.OrgSlug = c.Str("org_slug", true)
	p.Params, _ = c.Dict("deployment_params", true)
	p.Cron = deref(c.OptStr("cron"))
	p.WorkQueue = deref(c.OptStr("work_queue_name"))
	p.WorkPool = deref(c.OptStr("work_pool_name"))
	if err := c.Err(); err != nil {
		return p, err
	}
	return p, nil
}

// DeploymentUpdatePayload is route 15's job payload. A key absent from the
// request leaves that field unchanged ("Compatibility" in docs/ARCHITECTURE.md); Django always sends both
// cron and deployment_params, so it sees the Python proxy's replacement.
type DeploymentUpdatePayload struct {
	DeploymentID string         `json:"deployment_id"`
	ParamsSet    bool           `json:"params_set,omitempty"`
	Params       map[string]any `json:"params,omitempty"`
	CronSet      bool           `json:"cron_set,omitempty"`
	Cron         string         `json:"cron,omitempty"` // empty with CronSet: remove the schedule
	WorkQueue    string         `json:"work_queue,omitempty"`
	WorkPool     string         `json:"work_pool,omitempty"`
}

func DecodeDeploymentUpdate(params map[string]string, body []byte) (DeploymentUpdatePayload, error) {
	var p DeploymentUpdatePayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	p.Params, p.ParamsSet = c.Dict("deployment_params", false)
	p.CronSet = c.Has("cron")
	p.Cron = deref(c.OptStr("cron"))
	p.WorkQueue = deref(c.OptStr("work_queue_name"))
	p.WorkPool = deref(c.OptStr("work_pool_name"))
	if err := c.Err(); err != nil {
		return p, err
	}
	p.DeploymentID = params["deployment_id"]
	if !validate.UUIDPath(p.DeploymentID) {
		return p, badRequest(msgDeploymentUpdate)
	}
	return p, nil
}

// EntrypointPayload is route 16's job payload.
type EntrypointPayload struct {
	DeploymentID string `json:"deployment_id"`
	Entrypoint   string `json:"entrypoint"`
}

func DecodeEntrypoint(params map[string]string, body []byte) (EntrypointPayload, error) {
	var p EntrypointPayload
	obj, err := validate.Dict(body, false)
	if err != nil {
		return p, err
	}
	ep, _ := obj["entrypoint"].(string)
	if ep == "" {
		return p, badRequest("entrypoint (string) is required")
	}
	p.DeploymentID, p.Entrypoint = params["deployment_id"], ep
	if !validate.UUIDPath(p.DeploymentID) {
		return p, badRequest(msgEntrypoint)
	}
	return p, nil
}

// DeploymentDeletePayload is route 30's job payload.
type DeploymentDeletePayload struct {
	DeploymentID string `json:"deployment_id"`
}

func DecodeDeploymentDelete(params map[string]string, _ []byte) (DeploymentDeletePayload, error) {
	id := params["deployment_id"]
	if !validate.UUIDPath(id) {
		return DeploymentDeletePayload{}, badRequest("%s", notFoundText)
	}
	return DeploymentDeletePayload{DeploymentID: id}, nil
}

// SetSchedulePayload is route 33's job payload.
type SetSchedulePayload struct {
	DeploymentID string `json:"deployment_id"`
	Active       bool   `json:"active"`
}

func DecodeSetSchedule(params map[string]string, _ []byte) (SetSchedulePayload, error) {
	var p SetSchedulePayload
	status := params["status"]
	if status != "active" && status != "inactive" {
		// A string detail with 422, unlike pydantic's list.
		return p, apperr.New(apperr.Invalid, "incorrect status value")
	}
	p.DeploymentID, p.Active = params["deployment_id"], status == "active"
	if !validate.UUIDPath(p.DeploymentID) {
		return p, badRequest(msgSetSchedule)
	}
	return p, nil
}

// ---- run -------------------------------------------------------------------

// RunDeploymentCreate is route 14: an upsert by (flow, deployment name).
func (s *Service) RunDeploymentCreate(ctx context.Context, p DeploymentCreatePayload, j Job) (any, error) {
	pool, queue := p.WorkPool, p.WorkQueue
	if pool == "" {
		pool = s.DefaultWorkPool
	}
	if queue == "" {
		queue = s.DefaultWorkQueue
	}
	// deploy() refuses an unknown pool ("Could not find work pool").
	if err := s.prefect.Get(ctx, "/work_pools/"+url.PathEscape(pool), nil); err != nil {
		return nil, translate(err, failed(msgDeploymentCreate))
	}
	params := p.Params
	if params == nil {
		params = map[string]any{}
	}
	body := map[string]any{
		"work_pool_name":           pool,
		"work_queue_name":          queue,
		"tags":                     []string{p.OrgSlug},
		"parameters":               params,
		"schedules":                cronSchedules(p.Cron),
		"entrypoint":               s.DeploymentEntrypoint,
		"pull_steps":               s.pullSteps(),
		"parameter_openapi_schema": json.RawMessage(parameterSchema),
		"enforce_parameter_schema": true,
		"job_variables":            map[string]any{},
	}
	flow := flowNameOf(s.DeploymentEntrypoint)
	existing, err := s.deploymentByName(ctx, flow, p.DeploymentName)
	var id string
	switch {
	case err == nil:
		// An earlier attempt of this job, or Django reusing a name: update
		// in place, as deploy() does, keeping the same id.
		id = existing.ID
		if err = s.clearSlugSchedules(ctx, existing); err == nil {
			err = s.prefect.Do(ctx, http.MethodPatch, "/deployments/"+id, body, nil, true)
		}
	case prefect.IsNotFound(err):
		id, err = s.createDeployment(ctx, flow, p.DeploymentName, body)
	}
	if err != nil {
		return nil, translate(err, failed(msgDeploymentCreate))
	}
	return map[string]any{"deployment": map[string]any{"id": id, "name": p.DeploymentName, "params": params}}, nil
}

func (s *Service) createDeployment(ctx context.Context, flow, name string, body map[string]any) (string, error) {
	var f struct {
		ID string `json:"id"`
	}
	// Both POSTs are upserts in Prefect (flow by name, deployment by
	// flow_id+name), so retrying them is safe.
	if err := s.prefect.Do(ctx, http.MethodPost, "/flows/", map[string]string{"name": flow}, &f, true); err != nil {
		return "", err
	}
	body["flow_id"] = f.ID
	body["name"] = name
	body["paused"] = false
	body["path"] = nil
	var d struct {
		ID string `json:"id"`
	}
	if err := s.prefect.Do(ctx, http.MethodPost, "/deployments/", body, &d, true); err != nil {
		return "", err
	}
	return d.ID, nil
}

// deploymentDoc is the part of a Prefect deployment the writes read.
type deploymentDoc struct {
	ID        string                       `json:"id"`
	Schedules []map[string]json.RawMessage `json:"schedules"`
}

func (s *Service) deploymentByName(ctx context.Context, flow, name string) (deploymentDoc, error) {
	var d deploymentDoc
	err := s.prefect.Get(ctx, "/deployments/name/"+url.PathEscape(flow)+"/"+url.PathEscape(name), &d)
	return d, err
}

// clearSlugSchedules prepares a deployment for a PATCH that replaces its
// schedules. Prefect replaces the list only when the existing schedules have
// no slug; with slugs, `"schedules": []` is a no-op and a slug-less schedule
// is a 422 — so slugged schedules are deleted one by one first.
func (s *Service) clearSlugSchedules(ctx context.Context, d deploymentDoc) error {
	slugged := false
	for _, sc := range d.Schedules {
		if raw, ok := sc["slug"]; ok && string(raw) != "null" {
			slugged = true
		}
	}
	if !slugged {
		return nil
	}
	for _, sc := range d.Schedules {
		var sid string
		if err := json.Unmarshal(sc["id"], &sid); err != nil {
			return err
		}
		err := s.prefect.Do(ctx, http.MethodDelete, "/deployments/"+d.ID+"/schedules/"+url.PathEscape(sid), nil, nil, true)
		if err != nil && !prefect.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// cronSchedules is the Python proxy's schedules list for a cron (none when
// empty): CronSchedule(cron).model_dump(), active.
func cronSchedules(cron string) []any {
	if cron == "" {
		return []any{}
	}
	return []any{map[string]any{
		"schedule": map[string]any{"cron": cron, "timezone": "UTC", "day_or": true},
		"active":   true,
	}}
}

func (s *Service) pullSteps() []any {
	return []any{map[string]any{
		"prefect.deployments.steps.git_clone": map[string]any{"repository": s.FlowRepoURL, "branch": s.FlowRepoBranch},
	}}
}

// flowNameOf is the flow name Prefect derives from an entrypoint's function
// (@flow without a name): "path.py:deployment_schedule_flow_v5" gives
// "deployment-schedule-flow-v5".
func flowNameOf(entrypoint string) string {
	fn := entrypoint[strings.LastIndexByte(entrypoint, ':')+1:]
	return strings.ReplaceAll(fn, "_", "-")
}

// RunDeploymentUpdate is route 15.
func (s *Service) RunDeploymentUpdate(ctx context.Context, p DeploymentUpdatePayload, j Job) (any, error) {
	patch := map[string]any{}
	if p.ParamsSet {
		params := p.Params
		if params == nil {
			params = map[string]any{}
		}
		patch["parameters"] = params
	}
	if p.WorkPool != "" {
		patch["work_pool_name"] = p.WorkPool
	}
	if p.WorkQueue != "" {
		patch["work_queue_name"] = p.WorkQueue
	}
	path := "/deployments/" + p.DeploymentID
	if p.CronSet || len(patch) == 0 {
		// Read it: to see its schedules, or (nothing to change) to answer
		// an unknown deployment with the route's 400 as Python did.
		var d deploymentDoc
		if err := s.prefect.Get(ctx, path, &d); err != nil {
			return nil, translate(err, failed(msgDeploymentUpdate))
		}
		if p.CronSet {
			if err := s.clearSlugSchedules(ctx, d); err != nil {
				return nil, translate(err, failed(msgDeploymentUpdate))
			}
			patch["schedules"] = cronSchedules(p.Cron)
		}
	}
	if len(patch) > 0 {
		if err := s.prefect.Do(ctx, http.MethodPatch, path, patch, nil, true); err != nil {
			return nil, translate(err, failed(msgDeploymentUpdate))
		}
	}
	return successBody(), nil
}

// RunEntrypoint is route 16.
func (s *Service) RunEntrypoint(ctx context.Context, p EntrypointPayload, j Job) (any, error) {
	body := map[string]string{"entrypoint": p.Entrypoint}
	if err := s.prefect.Do(ctx, http.MethodPatch, "/deployments/"+p.DeploymentID, body, nil, true); err != nil {
		return nil, translate(err, failed(msgEntrypoint))
	}
	return successBody(), nil
}

// RunDeploymentDelete is route 30: null, or 400 with Prefect's raw answer.
func (s *Service) RunDeploymentDelete(ctx context.Context, p DeploymentDeletePayload, j Job) (any, error) {
	if err := s.prefect.Do(ctx, http.MethodDelete, "/deployments/"+p.DeploymentID, nil, nil, false); err != nil && !goneOnRetry(j, err) {
		return nil, translate(err, prefectText("prefect request failed"))
	}
	return nil, nil
}

// RunSetSchedule is route 33: schedules[0].active and the deployment's
// paused flag, together. A deployment without schedules is left alone, as
// the Python proxy did.
func (s *Service) RunSetSchedule(ctx context.Context, p SetSchedulePayload, j Job) (any, error) {
	path := "/deployments/" + p.DeploymentID
	var d deploymentDoc
	if err := s.prefect.Get(ctx, path, &d); err != nil {
		return nil, translate(err, failed(msgSetSchedule))
	}
	if len(d.Schedules) == 0 {
		return successBody(), nil
	}
	// Keep the keys DeploymentScheduleCreate accepts (Prefect forbids
	// unknown keys): the Python proxy deleted id, created, updated and
	// deployment_id; an allow-list also survives fields a newer Prefect adds.
	first := map[string]any{}
	for _, k := range [...]string{"schedule", "active", "max_scheduled_runs", "parameters", "slug"} {
		if v, ok := d.Schedules[0][k]; ok {
			first[k] = v
		}
	}
	first["active"] = p.Active
	body := map[string]any{"schedules": []any{first}, "paused": !p.Active}
	if err := s.prefect.Do(ctx, http.MethodPatch, path, body, nil, true); err != nil {
		return nil, translate(err, failed(msgSetSchedule))
	}
	return successBody(), nil
}
