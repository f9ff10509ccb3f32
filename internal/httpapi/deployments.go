package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// filterDeployments is route 25, POST /proxy/deployments/filter, body
// DeploymentFetch {org_slug: str, deployment_ids: list[str] | null}: both keys
// required. A null deployment_ids is the Python proxy's 400 (its service
// raised TypeError), not a 422.
func filterDeployments(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		b, err := readBodyFields(c)
		if err != nil {
			return nil, err
		}
		org := b.str("org_slug", true)
		ids, idsNull := b.strList("deployment_ids", true, true)
		if err := b.err(); err != nil {
			return nil, err
		}
		if idsNull {
			return nil, apperr.New(apperr.BadRequest, "failed to filter deployments")
		}
		return s.FilterDeployments(c.Request.Context(), org, ids)
	}
}

// getDeployment is route 29, GET /proxy/deployments/{deployment_id}.
func getDeployment(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		return s.Deployment(c.Request.Context(), c.Param("deployment_id"))
	}
}

// filterWorkers is route 37, POST /proxy/workers/filter/, body
// FilterPrefectWorkers {work_queue_names: list[str] = [], work_pool_names:
// list[str] = [], status: str = "ONLINE"} → {"count": n}. work_queue_names is
// validated but cannot narrow the count (Prefect does not tie workers to
// queues).
func filterWorkers(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		b, err := readBodyFields(c)
		if err != nil {
			return nil, err
		}
		b.strList("work_queue_names", false, false)
		pools, _ := b.strList("work_pool_names", false, false)
		status := "ONLINE"
		if _, ok := b.fields["status"]; ok {
			status = strings.ToUpper(b.str("status", false))
			if b.err() == nil && status != "ONLINE" && status != "OFFLINE" {
				b.fail(apperr.Field("enum", "Input should be 'ONLINE' or 'OFFLINE'", "body", "status"))
			}
		}
		if err := b.err(); err != nil {
			return nil, err
		}
		n, err := s.CountWorkers(c.Request.Context(), pools, status)
		if err != nil {
			return nil, err
		}
		return gin.H{"count": n}, nil
	}
}

// inProcessRunGone answers routes 12 and 13 (dbt core and shell runs inside
// the proxy process). The Python proxy ran arbitrary commands there; this
// proxy never runs a command, and Django no longer calls these routes.
func inProcessRunGone() handler {
	return func(c *gin.Context) (any, error) {
		return nil, apperr.New(apperr.NotImplemented,
			"running dbt or shell commands inside the proxy is not supported: create a deployment "+
				"(POST /proxy/v1/deployments/) and run it (POST /proxy/deployments/{deployment_id}/flow_run)")
	}
}

// bodyFields validates a JSON object body the way FastAPI/pydantic v2 does,
// collecting every field error so the 422 lists them all, with the same
// loc/msg/type entries FastAPI gives.
type bodyFields struct {
	fields map[string]json.RawMessage
	errs   []apperr.FieldError
}

// maxBody bounds what a read route accepts; Django's bodies are tiny.
const maxBody = 1 << 20

// readBodyFields reads the request body as a JSON object: a missing body,
// invalid JSON or a non-object is a 422 as FastAPI gives for a model body.
func readBodyFields(c *gin.Context) (*bodyFields, error) {
	data, err := io.ReadAll(io.LimitReader(c.Request.Body, maxBody+1))
	if err != nil {
		return nil, apperr.Wrap(apperr.BadRequest, err, "could not read the request body")
	}
	if len(data) > maxBody {
		return nil, apperr.New(apperr.TooLarge, "request body too large")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, apperr.Validation(apperr.Field("missing", "Field required", "body"))
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || dec.More() {
		// loc carries the character position of the error, as Python's
		// JSONDecodeError.pos does.
		pos := len(data)
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			pos = max(int(se.Offset)-1, 0)
		case err == nil:
			pos = int(dec.InputOffset())
			for pos < len(data) && (data[pos] == ' ' || data[pos] == '\t' || data[pos] == '\n' || data[pos] == '\r') {
				pos++
			}
		}
		return nil, apperr.Validation(apperr.Field("json_invalid", "JSON decode error", "body", pos))
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, apperr.Validation(apperr.Field("model_attributes_type",
			"Input should be a valid dictionary or object to extract fields from", "body"))
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(data, &fields) // cannot fail: data is a JSON object
	return &bodyFields{fields: fields}, nil
}

func (b *bodyFields) fail(fe apperr.FieldError) { b.errs = append(b.errs, fe) }

// err is the 422 listing every field error, or nil.
func (b *bodyFields) err() error {
	if len(b.errs) == 0 {
		return nil
	}
	return apperr.Validation(b.errs...)
}

// str reads a string field. pydantic v2 does not coerce numbers to strings.
func (b *bodyFields) str(name string, required bool) string {
	raw, ok := b.fields[name]
	if !ok {
		if required {
			b.fail(apperr.Field("missing", "Field required", "body", name))
		}
		return ""
	}
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		b.fail(apperr.Field("string_type", "Input should be a valid string", "body", name))
		return ""
	}
	return s
}

// strList reads a list[str] field; with nullable, null is allowed and
// reported by the second result.
func (b *bodyFields) strList(name string, required, nullable bool) ([]string, bool) {
	raw, ok := b.fields[name]
	if !ok {
		if required {
			b.fail(apperr.Field("missing", "Field required", "body", name))
		}
		return nil, false
	}
	if isNull(raw) {
		if nullable {
			return nil, true
		}
		b.fail(apperr.Field("list_type", "Input should be a valid list", "body", name))
		return nil, false
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		b.fail(apperr.Field("list_type", "Input should be a valid list", "body", name))
		return nil, false
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		var s string
		if isNull(it) || json.Unmarshal(it, &s) != nil {
			b.fail(apperr.Field("string_type", "Input should be a valid string", "body", name, i))
			continue
		}
		out = append(out, s)
	}
	return out, false
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }
