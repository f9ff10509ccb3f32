package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
)

// idChunk bounds how many ids one `any_` filter carries: SQLite (and asyncpg)
// cap the number of bound parameters per statement.
const idChunk = 200

// canonicalID returns id as Prefect's canonical lowercase UUID, or false when
// it is not a UUID. Prefect's routes are typed {id:uuid}, so a non-UUID would
// only earn a Prefect 404/422; answering the route's 400 ourselves saves the call.
func canonicalID(id string) (string, bool) { return validate.CanonicalUUID(id) }

// badID is the route's 400 for an id that cannot name a Prefect object.
func badID(msg string) error { return apperr.New(apperr.BadRequest, "%s", msg) }

// setKeys returns the JSON object obj with keys set to the given values,
// keeping Prefect's key order: an existing key is replaced in place (as a
// Python dict assignment would), a new one is appended.
func setKeys(obj json.RawMessage, kv ...any) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	type pair struct {
		key string
		val json.RawMessage
	}
	var pairs []pair
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		pairs = append(pairs, pair{kt.(string), v})
	}
	for i := 0; i+1 < len(kv); i += 2 {
		key := kv[i].(string)
		val, err := json.Marshal(kv[i+1])
		if err != nil {
			return nil, err
		}
		found := false
		for j := range pairs {
			if pairs[j].key == key {
				pairs[j].val, found = val, true
			}
		}
		if !found {
			pairs = append(pairs, pair{key, val})
		}
	}
	var b bytes.Buffer
	b.Grow(len(obj) + 64)
	b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(p.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(p.val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// filterByIDs pages through path for every row whose id is in ids, chunking
// the id list and fetching the chunks in parallel (bounded by FanOut). build
// turns one chunk into the filter body. Rows come back in chunk order.
func (s *Service) filterByIDs(ctx context.Context, path string, ids []string, build func(chunk []string) map[string]any) ([]json.RawMessage, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var chunks [][]string
	for i := 0; i < len(ids); i += idChunk {
		chunks = append(chunks, ids[i:min(i+idChunk, len(ids))])
	}
	out := make([][]json.RawMessage, len(chunks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(FanOut)
	for i, c := range chunks {
		g.Go(func() error {
			rows, err := s.prefect.FilterAll(gctx, path, build(c), 0)
			out[i] = rows
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var all []json.RawMessage
	for _, rows := range out {
		all = append(all, rows...)
	}
	return all, nil
}

// uniqueByID drops rows whose "id" was already seen. Prefect sorts by time
// with no tiebreaker, so offset paging across equal keys may repeat a row.
func uniqueByID(rows []json.RawMessage) []json.RawMessage {
	seen := make(map[string]bool, len(rows))
	out := rows[:0]
	for _, r := range rows {
		var h struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(r, &h) == nil && h.ID != "" {
			if seen[h.ID] {
				continue
			}
			seen[h.ID] = true
		}
		out = append(out, r)
	}
	return out
}

// stripFlowName removes the "<flow name> / " prefix Prefect puts on flow-run
// labels in graph-v2, so subflow labels read like task labels.
func stripFlowName(kind, label string) string {
	if kind == "flow-run" {
		if _, after, ok := strings.Cut(label, " / "); ok {
			return after
		}
	}
	return label
}

// withSpeculation runs primary and the speculative calls together, so a read
// whose next calls need only what the request already names (the flow run
// id) pays one round trip instead of two. primary's error wins: it is what
// the sequential read would have failed with first, and it cancels the
// speculative calls. primary itself is never cancelled by them, so when both
// fail the route still answers primary's error, as before.
func withSpeculation(ctx context.Context, primary func(context.Context) error, spec ...func(context.Context) error) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(sctx)
	g.SetLimit(FanOut)
	for _, f := range spec {
		g.Go(func() error { return f(gctx) })
	}
	perr := primary(ctx)
	if perr != nil {
		cancel()
	}
	serr := g.Wait()
	if perr != nil {
		return perr
	}
	return serr
}
