package proxy

// Block writes (routes 4, 5, 6, 9, 10, 11), as the REST calls Prefect's
// Block.save(name, overwrite=...) makes, with the block type and schema ids
// looked up by slug instead of recomputed.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
)

// AirbyteConnectionSlug is prefect-airbyte's AirbyteConnection block type.
const AirbyteConnectionSlug = "airbyte-connection"

// Route messages (the Python proxy's, "failed to prefect secret block" sic).
const (
	msgAirbyteServerCreate = "failed to create airbyte server block"
	msgAirbyteServerUpdate = "failed to update airbyte server block"
	msgAirbyteConnection   = "failed to upsert airbyte connection block"
	msgSecret              = "failed to prefect secret block"
)

// ---- decode ----------------------------------------------------------------

// AirbyteServerCreatePayload is route 4's job payload.
type AirbyteServerCreatePayload struct {
	BlockName  string `json:"block_name"` // cleaned
	ServerHost string `json:"server_host"`
	ServerPort int64  `json:"server_port"`
	APIVersion string `json:"api_version"`
	UseSSL     bool   `json:"use_ssl"`
}

func DecodeAirbyteServerCreate(_ map[string]string, body []byte) (AirbyteServerCreatePayload, error) {
	var p AirbyteServerCreatePayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	name := c.Str("blockName", true)
	p.ServerHost = c.Str("serverHost", true)
	port := c.Str("serverPort", true)
	p.APIVersion = c.Str("apiVersion", true)
	p.UseSSL = c.Bool("useSSL", false)
	if err := c.Err(); err != nil {
		return p, err
	}
	// AirbyteServer(server_port=...) rejected a non-integer port inside the
	// route's try: a 400, not a 422.
	n, typ, _ := validate.LaxInt(port)
	if typ != "" {
		return p, badRequest(msgAirbyteServerCreate)
	}
	p.BlockName, p.ServerPort = CleanBlockName(name), n
	return p, nil
}

// AirbyteServerUpdatePayload is route 5's job payload. Nil fields (and, as in
// the Python proxy, empty strings) leave the block's value unchanged.
type AirbyteServerUpdatePayload struct {
	BlockName  string  `json:"block_name"` // as given: the Python proxy did not clean it here
	ServerHost *string `json:"server_host,omitempty"`
	ServerPort *int64  `json:"server_port,omitempty"`
	APIVersion *string `json:"api_version,omitempty"`
	Username   *string `json:"username,omitempty"`
	Password   *string `json:"password,omitempty"`
	UseSSL     *bool   `json:"use_ssl,omitempty"`
}

func DecodeAirbyteServerUpdate(_ map[string]string, body []byte) (AirbyteServerUpdatePayload, error) {
	var p AirbyteServerUpdatePayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	p.BlockName = c.Str("blockName", true)
	p.ServerHost = nonEmpty(c.OptStr("serverHost"))
	port := nonEmpty(c.OptStr("serverPort"))
	p.APIVersion = nonEmpty(c.OptStr("apiVersion"))
	p.Username = nonEmpty(c.OptStr("username"))
	p.Password = nonEmpty(c.OptStr("password"))
	p.UseSSL = c.OptBool("useSSL")
	if err := c.Err(); err != nil {
		return p, err
	}
	if port != nil {
		// The Python proxy assigned the string unvalidated and saved a
		// corrupt block; we store the integer the block type declares, and
		// refuse what is not one with the route's 400.
		n, typ, _ := validate.LaxInt(*port)
		if typ != "" {
			return p, badRequest(msgAirbyteServerUpdate)
		}
		p.ServerPort = &n
	}
	return p, nil
}

func nonEmpty(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	return s
}

// AirbyteConnectionPayload is route 6's job payload.
type AirbyteConnectionPayload struct {
	ServerBlockName     string         `json:"server_block_name"`
	ConnectionID        string         `json:"connection_id"` // canonical UUID
	ConnectionBlockName string         `json:"connection_block_name"`
	ConnectionName      string         `json:"connection_name"`
	Extra               map[string]any `json:"extra"`
}

func DecodeAirbyteConnection(_ map[string]string, body []byte) (AirbyteConnectionPayload, error) {
	var p AirbyteConnectionPayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	p.ServerBlockName = c.Str("serverBlockName", true)
	connID := c.Str("connectionId", true)
	p.ConnectionBlockName = c.Str("connectionBlockName", true)
	p.ConnectionName = c.Str("connectionName", false)
	p.Extra, _ = c.Dict("extra", false)
	if err := c.Err(); err != nil {
		return p, err
	}
	// The block's connection_id is a uuid.UUID: pydantic accepts the same
	// spellings as uuid.Parse and stores the canonical form. A bad one
	// failed inside the route's try: 400.
	id, perr := uuid.Parse(connID)
	if perr != nil {
		return p, badRequest(msgAirbyteConnection)
	}
	p.ConnectionID = id.String()
	if p.Extra == nil {
		p.Extra = map[string]any{}
	}
	return p, nil
}

// SecretPayload is the job payload of routes 9 and 10.
type SecretPayload struct {
	BlockName string `json:"block_name"` // cleaned
	Secret    string `json:"secret"`
}

func DecodeSecret(_ map[string]string, body []byte) (SecretPayload, error) {
	var p SecretPayload
	c, err := validate.Model(body)
	if err != nil {
		return p, err
	}
	p.Secret = c.Str("secret", true)
	name := c.Str("blockName", true)
	if err := c.Err(); err != nil {
		return p, err
	}
	p.BlockName = CleanBlockName(name)
	return p, nil
}

// BlockDeletePayload is route 11's job payload.
type BlockDeletePayload struct {
	BlockID string `json:"block_id"`
}

func DecodeBlockDelete(params map[string]string, _ []byte) (BlockDeletePayload, error) {
	id := params["block_id"]
	if !validate.UUIDPath(id) {
		return BlockDeletePayload{}, badRequest("%s", notFoundText)
	}
	return BlockDeletePayload{BlockID: id}, nil
}

// ---- run -------------------------------------------------------------------

func (s *Service) RunAirbyteServerCreate(ctx context.Context, p AirbyteServerCreatePayload, j Job) (any, error) {
	// username and password keep the block type's defaults, as in Python.
	data := map[string]any{
		"username":    "airbyte",
		"password":    "password",
		"server_host": p.ServerHost,
		"server_port": p.ServerPort,
		"api_version": p.APIVersion,
		"use_ssl":     p.UseSSL,
	}
	id, err := s.saveBlock(ctx, AirbyteServerSlug, p.BlockName, data, false)
	if err != nil {
		return nil, translate(err, failed(msgAirbyteServerCreate))
	}
	return map[string]string{"block_id": id, "cleaned_block_name": p.BlockName}, nil
}

func (s *Service) RunAirbyteServerUpdate(ctx context.Context, p AirbyteServerUpdatePayload, j Job) (any, error) {
	doc, err := s.BlockDocumentByName(ctx, AirbyteServerSlug, p.BlockName)
	if err != nil {
		return nil, translate(err, failed(msgAirbyteServerUpdate))
	}
	data := make(map[string]any, len(doc.Data)+6)
	for k, v := range doc.Data {
		data[k] = v
	}
	set := func(key string, v any, ok bool) {
		if ok {
			data[key] = v
		}
	}
	set("server_host", deref(p.ServerHost), p.ServerHost != nil)
	set("server_port", deref(p.ServerPort), p.ServerPort != nil)
	set("api_version", deref(p.APIVersion), p.APIVersion != nil)
	set("username", deref(p.Username), p.Username != nil)
	set("password", deref(p.Password), p.Password != nil)
	set("use_ssl", deref(p.UseSSL), p.UseSSL != nil)
	ref, err := s.blockRef(ctx, AirbyteServerSlug)
	if err != nil {
		return nil, translate(err, failed(msgAirbyteServerUpdate))
	}
	if err := s.patchBlockDoc(ctx, doc.ID, ref.SchemaID, data); err != nil {
		return nil, translate(err, failed(msgAirbyteServerUpdate))
	}
	return map[string]string{"block_id": doc.ID, "cleaned_block_name": p.BlockName}, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (s *Service) RunAirbyteConnection(ctx context.Context, p AirbyteConnectionPayload, j Job) (any, error) {
	server, err := s.BlockDocumentByName(ctx, AirbyteServerSlug, p.ServerBlockName)
	if err != nil {
		return nil, translate(err, failed(msgAirbyteConnection))
	}
	extra := make(map[string]any, len(p.Extra)+1)
	for k, v := range p.Extra {
		extra[k] = v
	}
	extra["name"] = p.ConnectionName
	data := map[string]any{
		"airbyte_server":  map[string]any{"$ref": map[string]string{"block_document_id": server.ID}},
		"connection_id":   p.ConnectionID,
		"poll_interval_s": 15,
		"status_updates":  false,
		"timeout":         5,
		"extra":           extra,
	}
	id, err := s.saveBlock(ctx, AirbyteConnectionSlug, p.ConnectionBlockName, data, true)
	if err != nil {
		return nil, translate(err, failed(msgAirbyteConnection))
	}
	return map[string]string{"block_id": id, "cleaned_block_name": p.ConnectionBlockName}, nil
}

// RunSecretCreate is route 9: Secret(value).save(cleaned, overwrite=True), an
// upsert despite the POST.
func (s *Service) RunSecretCreate(ctx context.Context, p SecretPayload, j Job) (any, error) {
	id, err := s.saveBlock(ctx, SecretSlug, p.BlockName, map[string]any{"value": p.Secret}, true)
	if err != nil {
		return nil, translate(err, failed(msgSecret))
	}
	return map[string]string{"block_id": id, "block_name": p.BlockName}, nil
}

// RunSecretUpsert is route 10: load by name; overwrite it, or create it.
func (s *Service) RunSecretUpsert(ctx context.Context, p SecretPayload, j Job) (any, error) {
	doc, err := s.BlockDocumentByName(ctx, SecretSlug, p.BlockName)
	if prefect.IsNotFound(err) {
		return s.RunSecretCreate(ctx, p, j)
	}
	if err != nil {
		return nil, translate(err, failed(msgSecret))
	}
	ref, err := s.blockRef(ctx, SecretSlug)
	if err == nil {
		err = s.patchBlockDoc(ctx, doc.ID, ref.SchemaID, map[string]any{"value": p.Secret})
	}
	if err != nil {
		return nil, translate(err, failed(msgSecret))
	}
	return map[string]string{"block_id": doc.ID, "block_name": p.BlockName}, nil
}

// RunBlockDelete is route 11: null, or 400 with Prefect's raw answer.
func (s *Service) RunBlockDelete(ctx context.Context, p BlockDeletePayload, j Job) (any, error) {
	if err := s.prefect.Do(ctx, http.MethodDelete, "/block_documents/"+p.BlockID, nil, nil, false); err != nil && !goneOnRetry(j, err) {
		return nil, translate(err, prefectText("prefect request failed"))
	}
	return nil, nil
}

// ---- block documents -------------------------------------------------------

// saveBlock is Block.save(name, overwrite): POST the document; on 409 with
// overwrite, PATCH the existing one. Without overwrite a 409 is a failure,
// except when the existing document holds exactly our data — that is this
// job's own earlier attempt whose answer was lost, and the save succeeded.
func (s *Service) saveBlock(ctx context.Context, slug, name string, data map[string]any, overwrite bool) (string, error) {
	ref, err := s.blockRef(ctx, slug)
	if err != nil {
		return "", err
	}
	var created struct {
		ID string `json:"id"`
	}
	body := map[string]any{
		"name":            name,
		"block_schema_id": ref.SchemaID,
		"block_type_id":   ref.TypeID,
		"data":            data,
		"is_anonymous":    false,
	}
	err = s.prefect.Do(ctx, http.MethodPost, "/block_documents/", body, &created, false)
	if err == nil {
		return created.ID, nil
	}
	if !prefect.IsStatus(err, http.StatusConflict) {
		return "", err
	}
	doc, gerr := s.BlockDocumentByName(ctx, slug, name)
	if gerr != nil {
		if prefect.IsNotFound(gerr) {
			return "", err // deleted meanwhile: report the conflict
		}
		return "", gerr
	}
	if !overwrite {
		if sameData(doc.Data, data) {
			return doc.ID, nil
		}
		return "", err
	}
	if err := s.patchBlockDoc(ctx, doc.ID, ref.SchemaID, data); err != nil {
		return "", err
	}
	return doc.ID, nil
}

// patchBlockDoc replaces the document's data (Prefect merges top-level keys,
// and we always send every key) and moves it to the newest schema.
func (s *Service) patchBlockDoc(ctx context.Context, id, schemaID string, data map[string]any) error {
	body := map[string]any{"block_schema_id": schemaID, "data": data}
	return s.prefect.Do(ctx, http.MethodPatch, "/block_documents/"+url.PathEscape(id), body, nil, true)
}

// sameData compares a stored document's data with what we would write.
func sameData(stored map[string]json.RawMessage, ours map[string]any) bool {
	a, err1 := json.Marshal(stored)
	b, err2 := json.Marshal(ours)
	if err1 != nil || err2 != nil {
		return false
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// ---- block types and schemas -----------------------------------------------

// BlockRef is a block type's id and the id of its newest schema.
type BlockRef struct {
	TypeID   string
	SchemaID string
}

// blockCache remembers BlockRefs. They practically never change, but a newer
// schema can be registered (a prefect-airbyte upgrade on the workers), so an
// entry is refreshed after blockRefTTL.
type blockCache struct {
	mu   sync.Mutex
	refs map[string]cachedRef
}

type cachedRef struct {
	ref BlockRef
	at  time.Time
}

const blockRefTTL = 10 * time.Minute

// blockRef returns the type and newest schema of slug, registering the
// Airbyte types on a Prefect that lacks them.
func (s *Service) blockRef(ctx context.Context, slug string) (BlockRef, error) {
	s.blockRefs.mu.Lock()
	c, ok := s.blockRefs.refs[slug]
	s.blockRefs.mu.Unlock()
	if ok && time.Since(c.at) < blockRefTTL {
		return c.ref, nil
	}
	ref, err := shared(s, "write:block-ref:"+slug, func() (BlockRef, error) { return s.lookupBlockRef(ctx, slug) })
	if err != nil {
		return ref, err
	}
	s.blockRefs.mu.Lock()
	if s.blockRefs.refs == nil {
		s.blockRefs.refs = map[string]cachedRef{}
	}
	s.blockRefs.refs[slug] = cachedRef{ref: ref, at: time.Now()}
	s.blockRefs.mu.Unlock()
	return ref, nil
}

func (s *Service) lookupBlockRef(ctx context.Context, slug string) (BlockRef, error) {
	var ref BlockRef
	var bt struct {
		ID string `json:"id"`
	}
	err := s.prefect.Get(ctx, "/block_types/slug/"+url.PathEscape(slug), &bt)
	def, known := airbyteBlockType(slug)
	if prefect.IsNotFound(err) && known {
		bt.ID, err = s.registerBlockType(ctx, def)
	}
	if err != nil {
		return ref, err
	}
	ref.TypeID = bt.ID
	schema, err := s.newestSchema(ctx, bt.ID)
	if err != nil {
		return ref, err
	}
	if schema.ID == "" && known {
		schema.ID, err = s.registerBlockSchema(ctx, slug, bt.ID)
		if err != nil {
			return ref, err
		}
	}
	if schema.ID == "" {
		return ref, fmt.Errorf("block type %q has no schema in Prefect", slug)
	}
	ref.SchemaID = schema.ID
	return ref, nil
}

type blockSchema struct {
	ID       string `json:"id"`
	Checksum string `json:"checksum"`
}

// newestSchema reads the type's newest schema (Prefect sorts newest first);
// an empty ID means the type has none.
func (s *Service) newestSchema(ctx context.Context, typeID string) (blockSchema, error) {
	var rows []blockSchema
	body := map[string]any{
		"block_schemas": map[string]any{"block_type_id": map[string]any{"any_": []string{typeID}}},
		"limit":         1,
	}
	if err := s.prefect.PostRead(ctx, "/block_schemas/filter", body, &rows); err != nil {
		return blockSchema{}, err
	}
	if len(rows) == 0 {
		return blockSchema{}, nil
	}
	return rows[0], nil
}

// registerBlockType creates the type; a 409 means another worker won the
// race, so the existing type is read back.
func (s *Service) registerBlockType(ctx context.Context, def blockTypeDef) (string, error) {
	var bt struct {
		ID string `json:"id"`
	}
	body := map[string]any{
		"name":              def.Name,
		"slug":              def.Slug,
		"logo_url":          airbyteLogo,
		"documentation_url": def.Docs,
		"code_example":      def.Example,
	}
	err := s.prefect.Do(ctx, http.MethodPost, "/block_types/", body, &bt, false)
	if prefect.IsStatus(err, http.StatusConflict) {
		err = s.prefect.Get(ctx, "/block_types/slug/"+url.PathEscape(def.Slug), &bt)
	}
	if err == nil {
		s.log.WithField("block_type", def.Slug).Info("registered block type in Prefect")
	}
	return bt.ID, err
}

// registerBlockSchema posts the schema; Prefect dedupes schemas by checksum,
// so concurrent or repeated registrations converge on one row.
func (s *Service) registerBlockSchema(ctx context.Context, slug, typeID string) (string, error) {
	var fields map[string]any
	if err := json.Unmarshal([]byte(airbyteServerFields), &fields); err != nil {
		return "", err
	}
	if slug == AirbyteConnectionSlug {
		server, err := s.blockRef(ctx, AirbyteServerSlug)
		if err != nil {
			return "", err
		}
		var schema blockSchema
		if err := s.prefect.Get(ctx, "/block_schemas/"+server.SchemaID, &schema); err != nil {
			return "", err
		}
		serverFields := fields
		fields = nil // a fresh map: Unmarshal would merge into the server's
		if err := json.Unmarshal([]byte(airbyteConnectionFields), &fields); err != nil {
			return "", err
		}
		fields["block_schema_references"] = map[string]any{
			"airbyte_server": map[string]any{"block_schema_checksum": schema.Checksum, "block_type_slug": AirbyteServerSlug},
		}
		fields["definitions"] = map[string]any{"AirbyteServer": serverFields}
	}
	var created blockSchema
	body := map[string]any{
		"block_type_id": typeID,
		"fields":        fields,
		"capabilities":  []string{},
		"version":       "non-versioned",
	}
	if err := s.prefect.Do(ctx, http.MethodPost, "/block_schemas/", body, &created, true); err != nil {
		return "", err
	}
	s.log.WithField("block_type", slug).Info("registered block schema in Prefect")
	return created.ID, nil
}

// blockTypeDef is what Prefect's UI shows for a block type.
type blockTypeDef struct {
	Name, Slug, Docs, Example string
}

func airbyteBlockType(slug string) (blockTypeDef, bool) {
	switch slug {
	case AirbyteServerSlug:
		return blockTypeDef{
			Name:    "Airbyte Server",
			Slug:    slug,
			Docs:    "https://prefecthq.github.io/prefect-airbyte/server/#prefect_airbyte.server.AirbyteServer",
			Example: "```python\nfrom prefect_airbyte.server import AirbyteServer\n\nairbyte_server_block = AirbyteServer.load(\"BLOCK_NAME\")\n```",
		}, true
	case AirbyteConnectionSlug:
		return blockTypeDef{
			Name:    "Airbyte Connection",
			Slug:    slug,
			Docs:    "https://prefecthq.github.io/prefect-airbyte/connections/#prefect_airbyte.connections.AirbyteConnection",
			Example: "```python\nfrom prefect_airbyte.connections import AirbyteConnection\n\nairbyte_connection_block = AirbyteConnection.load(\"BLOCK_NAME\")\n```",
		}, true
	}
	return blockTypeDef{}, false
}

const airbyteLogo = "https://cdn.sanity.io/images/3ugk85nk/production/7f50097d1915fe75b0ee84c951c742a83d3c53cb-250x250.png"

// airbyteServerFields mirrors the JSON schema Prefect generates for
// prefect-airbyte's AirbyteServer (password is a secret field), so a schema
// registered here has the checksum the Python package would compute.
const airbyteServerFields = `{
 "block_schema_references": {},
 "block_type_slug": "airbyte-server",
 "properties": {
  "username": {"default": "airbyte", "description": "Username to authenticate with Airbyte API.", "title": "Username", "type": "string", "position": 0},
  "password": {"default": "**********", "description": "Password to authenticate with Airbyte API.", "format": "password", "title": "Password", "type": "string", "writeOnly": true, "position": 1},
  "server_host": {"default": "localhost", "description": "Host address of Airbyte server.", "example": "127.0.0.1", "title": "Server Host", "type": "string", "position": 2},
  "server_port": {"default": 8000, "description": "Port number of Airbyte server.", "title": "Server Port", "type": "integer", "position": 3},
  "api_version": {"default": "v1", "description": "Airbyte API version to use.", "title": "API Version", "type": "string", "position": 4},
  "use_ssl": {"default": false, "description": "Whether to use SSL when connecting to Airbyte server.", "title": "Use SSL", "type": "boolean", "position": 5}
 },
 "secret_fields": ["password"],
 "title": "AirbyteServer",
 "type": "object"
}`

// airbyteConnectionFields mirrors AirbyteConnection of Dalgo's prefect-airbyte
// fork (with `extra`); block_schema_references and definitions are added at
// registration, pointing at the server schema Prefect holds.
const airbyteConnectionFields = `{
 "block_type_slug": "airbyte-connection",
 "properties": {
  "airbyte_server": {"$ref": "#/definitions/AirbyteServer", "description": "AirbyteServer block representing the Airbyte instance where the Airbyte connection is defined.", "position": 0},
  "connection_id": {"description": "UUID of the Airbyte Connection to trigger.", "format": "uuid", "title": "Connection Id", "type": "string", "position": 1},
  "poll_interval_s": {"default": 15, "description": "Time in seconds between status checks of the Airbyte sync job.", "title": "Poll Interval S", "type": "integer", "position": 2},
  "status_updates": {"default": false, "description": "Whether to log job status on each poll of the Airbyte sync job.", "title": "Status Updates", "type": "boolean", "position": 3},
  "timeout": {"default": 5, "description": "Timeout in seconds for requests made by httpx.AsyncClient.", "title": "Timeout", "type": "integer", "position": 4},
  "extra": {"default": {}, "description": "Extra settings of the connection (Dalgo: name, env, post_sync_ops).", "title": "Extra", "type": "object", "position": 5}
 },
 "required": ["airbyte_server", "connection_id"],
 "secret_fields": ["airbyte_server.password"],
 "title": "AirbyteConnection",
 "type": "object"
}`
