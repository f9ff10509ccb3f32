package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Block type slugs the proxy reads and writes.
const (
	AirbyteServerSlug = "airbyte-server"
	SecretSlug        = "secret"
)

// CleanBlockName reduces a block name the way the Python proxy did before a
// lookup or create: re.sub(r"[^\-a-z0-9]", "", name.lower()). Prefect's block
// names allow only lowercase letters, digits and dashes.
func CleanBlockName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range strings.ToLower(name) {
		if r == '-' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// BlockDocument is the part of Prefect's BlockDocument the proxy reads. Data
// holds secret values in clear (it is read with include_secrets=true): never
// log it or put it in an error.
type BlockDocument struct {
	ID   string                     `json:"id"`
	Name string                     `json:"name"`
	Data map[string]json.RawMessage `json:"data"`
}

// BlockDocumentByName reads a block document by type slug and name, secrets
// included, as Block.load(name) does. A missing document (or block type) is
// Prefect's 404, which the caller tests with prefect.IsNotFound.
func (s *Service) BlockDocumentByName(ctx context.Context, slug, name string) (BlockDocument, error) {
	var doc BlockDocument
	path := "/block_types/slug/" + url.PathEscape(slug) + "/block_documents/name/" +
		url.PathEscape(name) + "?include_secrets=true"
	err := s.prefect.Get(ctx, path, &doc)
	return doc, err
}

// AirbyteServerBlockID is route 2: {"block_id": "<uuid>"}, or {"block_id": null}
// when no such block exists — Django creates the block on null, so a missing
// block must not be an error. The name is used as given (the Python proxy did
// not clean it here).
func (s *Service) AirbyteServerBlockID(ctx context.Context, name string) (map[string]*string, error) {
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	doc, err := s.BlockDocumentByName(ctx, AirbyteServerSlug, name)
	if prefect.IsNotFound(err) {
		return map[string]*string{"block_id": nil}, nil
	}
	if err != nil {
		return nil, translate(err, airbyteLookup)
	}
	return map[string]*string{"block_id": &doc.ID}, nil
}

// AirbyteServerConfig is route 3's answer.
type AirbyteServerConfig struct {
	Host    string `json:"host"`
	Port    int64  `json:"port"`
	Version string `json:"version"`
	Token   string `json:"token"` // base64("username:password")
}

// AirbyteServerBlock is route 3: the connection settings of an airbyte-server
// block and its basic-auth token. A missing block is 404 "block not found"
// (the Python proxy meant this but crashed into a 500).
func (s *Service) AirbyteServerBlock(ctx context.Context, name string) (AirbyteServerConfig, error) {
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	doc, err := s.BlockDocumentByName(ctx, AirbyteServerSlug, name)
	if prefect.IsNotFound(err) {
		return AirbyteServerConfig{}, apperr.Wrap(apperr.NotFound, err, "block not found")
	}
	if err != nil {
		return AirbyteServerConfig{}, translate(err, airbyteLookup)
	}
	// Defaults are prefect-airbyte's AirbyteServer field defaults, which the
	// Python proxy got by loading the block into that model.
	host, okHost := jsonString(doc.Data["server_host"], "localhost")
	version, okVer := jsonString(doc.Data["api_version"], "v1")
	user, okUser := jsonString(doc.Data["username"], "airbyte")
	pass, okPass := jsonString(doc.Data["password"], "password")
	port, okPort := jsonInt(doc.Data["server_port"], 8000)
	if !(okHost && okVer && okUser && okPass && okPort) {
		return AirbyteServerConfig{}, apperr.New(apperr.Upstream,
			"airbyte server block %q does not match the airbyte-server schema", name)
	}
	return AirbyteServerConfig{
		Host:    host,
		Port:    port,
		Version: version,
		Token:   base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
	}, nil
}

// airbyteLookup is routes 2/3's answer to a failed lookup. The Python proxy
// answered 500 "Internal server error"; a Prefect fault is not ours, so it is a
// 502 with a detail instead.
var airbyteLookup = Contract{Code: apperr.Upstream,
	Message: "Internal server error: failed to look up the airbyte server block"}

// SecretBlockRef is route 8's answer.
type SecretBlockRef struct {
	BlockID   string `json:"block_id"`
	BlockName string `json:"block_name"`
}

// SecretBlock is route 8: the id of the secret block with the cleaned name.
func (s *Service) SecretBlock(ctx context.Context, name string) (SecretBlockRef, error) {
	cleaned := CleanBlockName(name)
	doc, err := s.secretDocument(ctx, cleaned, "failed to fetch secret block")
	if err != nil {
		return SecretBlockRef{}, err
	}
	return SecretBlockRef{BlockID: doc.ID, BlockName: cleaned}, nil
}

// SecretBlockContents is route 7: the secret's value as Secret.get() returns
// it — a stored string that is valid JSON is returned parsed, any other string
// as a JSON string, a stored JSON value as is. Never log the result.
func (s *Service) SecretBlockContents(ctx context.Context, name string) (json.RawMessage, error) {
	cleaned := CleanBlockName(name)
	doc, err := s.secretDocument(ctx, cleaned, "failed to fetch secret block contents")
	if err != nil {
		return nil, err
	}
	raw, ok := doc.Data["value"]
	if !ok || len(raw) == 0 {
		return nil, apperr.New(apperr.BadRequest, "failed to fetch secret block contents")
	}
	var str string
	if json.Unmarshal(raw, &str) != nil {
		return raw, nil // a JSON value stored as such
	}
	if trimmed := strings.TrimSpace(str); trimmed != "" && json.Valid([]byte(trimmed)) {
		return json.RawMessage(trimmed), nil
	}
	return raw, nil
}

// secretDocument loads a secret block by its (already cleaned) name; a
// missing one is the Python proxy's 404 "no secret block named <cleaned>".
func (s *Service) secretDocument(ctx context.Context, cleaned, failMsg string) (BlockDocument, error) {
	notFound := apperr.New(apperr.NotFound, "no secret block named %s", cleaned)
	if cleaned == "" {
		return BlockDocument{}, notFound // Prefect has no route for an empty name
	}
	ctx, cancel := s.readCtx(ctx)
	defer cancel()
	doc, err := s.BlockDocumentByName(ctx, SecretSlug, cleaned)
	if prefect.IsNotFound(err) {
		notFound.Err = err
		return BlockDocument{}, notFound
	}
	if err != nil {
		return BlockDocument{}, translate(err, failed(failMsg))
	}
	return doc, nil
}

// jsonString decodes a JSON string, def when the field is absent or null.
func jsonString(raw json.RawMessage, def string) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return def, true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonInt decodes an integer stored as a JSON number or a numeric string (the
// Python model coerced both), def when absent or null.
func jsonInt(raw json.RawMessage, def int64) (int64, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return def, true
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		n = json.Number(strings.TrimSpace(s))
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	if f, err := strconv.ParseFloat(string(n), 64); err == nil && f == float64(int64(f)) {
		return int64(f), true
	}
	return 0, false
}
