package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// handler is the shape of every route: return the 200 body or an error.
type handler func(c *gin.Context) (any, error)

// h adapts a handler to Gin. A nil body is written as JSON null, as the
// Python proxy did for routes that return nothing.
func h(fn handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := fn(c)
		if err != nil {
			writeError(c, err)
			return
		}
		if c.Writer.Written() {
			return
		}
		c.JSON(http.StatusOK, body)
	}
}

// writeError is the one place an error becomes an HTTP answer.
func writeError(c *gin.Context, err error) {
	e := apperr.From(err)
	c.Error(err) //nolint:errcheck // recorded for the access log
	c.AbortWithStatusJSON(e.Status(), e.Body())
}
