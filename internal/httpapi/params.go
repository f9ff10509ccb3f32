package httpapi

import (
	"io"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/validate"
)

// maxBody bounds what a read route accepts; Django's bodies are tiny.
const maxBody = 1 << 20

// readModel reads a read route's body bound to a pydantic model; the
// checks are internal/validate's, the same as the write routes'.
func readModel(c *gin.Context) (*validate.Object, error) {
	data, err := io.ReadAll(io.LimitReader(c.Request.Body, maxBody+1))
	if err != nil {
		return nil, apperr.Wrap(apperr.BadRequest, err, "could not read the request body")
	}
	if len(data) > maxBody {
		return nil, apperr.New(apperr.TooLarge, "request body too large")
	}
	o, verr := validate.Model(data)
	if verr != nil {
		return nil, verr
	}
	return o, nil
}

// query validates a route's query string.
func query(c *gin.Context) *validate.Query { return validate.NewQuery(c.Request.URL.Query()) }
