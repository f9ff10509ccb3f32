package validate

import (
	"fmt"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// MaxDepth is how deeply a request body may nest objects and arrays. Django's
// deepest body (a deployment's parameters) nests a handful of levels; a body
// nested thousands of levels deep is an attack or a bug, and Prefect would
// reject it after the job had used its retries.
const MaxDepth = 64

// DepthExceeded reports whether the JSON text in body nests objects and
// arrays deeper than max, and the byte offset of the bracket that goes over.
// It scans the bytes once without decoding or allocating (strings, with their
// escapes, are skipped), so it is cheap enough to run before the real
// decoder; it does not validate the JSON, which the decoder then does.
func DepthExceeded(body []byte, max int) (offset int, exceeded bool) {
	depth := 0
	inString, escaped := false, false
	for i, c := range body {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return i, true
			}
		case '}', ']':
			depth--
		}
	}
	return 0, false
}

// CheckDepth is the 422 FastAPI-shaped detail for a body nested deeper than
// MaxDepth, or nil.
func CheckDepth(body []byte) *apperr.Error {
	pos, over := DepthExceeded(body, MaxDepth)
	if !over {
		return nil
	}
	return apperr.Validation(apperr.Field("json_invalid",
		fmt.Sprintf("JSON decode error: nesting deeper than %d levels", MaxDepth), "body", pos))
}
