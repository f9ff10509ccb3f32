package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// DeploymentJSON is the Python proxy's deployment_to_json: the shape Django
// reads for a deployment. Field order follows the Python dict.
type DeploymentJSON struct {
	Name             string          `json:"name"`
	DeploymentID     string          `json:"deploymentId"`
	Tags             json.RawMessage `json:"tags"`
	Cron             string          `json:"cron"`
	IsScheduleActive bool            `json:"isScheduleActive"`
	Parameters       json.RawMessage `json:"parameters"`
	Entrypoint       json.RawMessage `json:"entrypoint"`
}

// prefectDeployment is the part of Prefect's DeploymentResponse read here.
type prefectDeployment struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Tags       json.RawMessage `json:"tags"`
	Parameters json.RawMessage `json:"parameters"`
	Entrypoint json.RawMessage `json:"entrypoint"`
	Schedules  []struct {
		Schedule struct {
			Cron *string `json:"cron"`
		} `json:"schedule"`
		Active bool `json:"active"`
	} `json:"schedules"`
}

// DeploymentToJSON converts one Prefect deployment to DeploymentJSON. The
// first schedule gives cron and isScheduleActive. A non-cron (interval or
// rrule) schedule gives cron "" where the Python proxy raised KeyError and
// failed the whole request; Dalgo only ever writes cron schedules.
func DeploymentToJSON(raw json.RawMessage) (DeploymentJSON, error) {
	var d prefectDeployment
	if err := json.Unmarshal(raw, &d); err != nil {
		return DeploymentJSON{}, fmt.Errorf("decode deployment: %w", err)
	}
	out := DeploymentJSON{
		Name:         d.Name,
		DeploymentID: d.ID,
		Tags:         orNull(d.Tags),
		Parameters:   orNull(d.Parameters),
		Entrypoint:   orNull(d.Entrypoint),
	}
	if len(d.Schedules) > 0 {
		if c := d.Schedules[0].Schedule.Cron; c != nil {
			out.Cron = *c
		}
		out.IsScheduleActive = d.Schedules[0].Active
	}
	return out, nil
}

func orNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

// Deployment is route 29: one deployment as DeploymentJSON. Any Prefect
// rejection (unknown or malformed id) is 400 "failed to fetch deployment <id>".
func (s *Service) Deployment(ctx context.Context, id string) (DeploymentJSON, error) {
	msg := "failed to fetch deployment " + id
	raw, err := sharedRead(ctx, s, "deployment:"+id, func(ctx context.Context) (json.RawMessage, error) {
		var raw json.RawMessage
		err := s.prefect.Get(ctx, "/deployments/"+url.PathEscape(id), &raw)
		return raw, err
	})
	if err != nil {
		return DeploymentJSON{}, translate(err, failed(msg))
	}
	d, err := DeploymentToJSON(raw)
	if err != nil {
		return DeploymentJSON{}, apperr.Wrap(apperr.Upstream, err, "%s: unexpected answer from Prefect", msg)
	}
	return d, nil
}

// FilterDeployments is route 25: the deployments tagged with orgSlug among
// ids, as {"deployments": [DeploymentJSON...]}. Unlike the Python proxy it
// pages through Prefect's 200-row cap. Prefect rejects a non-UUID id (422),
// which is the route's 400 as before.
func (s *Service) FilterDeployments(ctx context.Context, orgSlug string, ids []string) (map[string][]DeploymentJSON, error) {
	const msg = "failed to filter deployments"
	if len(ids) == 0 {
		// Prefect answers an empty id list with no rows; skip the call.
		return map[string][]DeploymentJSON{"deployments": {}}, nil
	}
	body := map[string]any{
		"deployments": map[string]any{
			"operator": "and_",
			"tags":     map[string]any{"all_": []string{orgSlug}},
			"id":       map[string]any{"any_": ids},
		},
	}
	key, _ := json.Marshal(body)
	rows, err := sharedRead(ctx, s, "deployments/filter:"+string(key), func(ctx context.Context) ([]json.RawMessage, error) {
		return s.prefect.FilterAll(ctx, "/deployments/filter", body, 0)
	})
	if err != nil {
		return nil, translate(err, failed(msg))
	}
	out := make([]DeploymentJSON, 0, len(rows))
	seen := make(map[string]bool, len(rows))
	for _, row := range rows {
		d, err := DeploymentToJSON(row)
		if err != nil {
			return nil, apperr.Wrap(apperr.Upstream, err, "%s: unexpected answer from Prefect", msg)
		}
		// Pages are sorted by name, which is not unique across flows; a row
		// can shift between pages while paging.
		if seen[d.DeploymentID] {
			continue
		}
		seen[d.DeploymentID] = true
		out = append(out, d)
	}
	return map[string][]DeploymentJSON{"deployments": out}, nil
}
