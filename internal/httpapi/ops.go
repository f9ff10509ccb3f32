package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
)

func livez() gin.HandlerFunc {
	return func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }
}

// readyz answers from ready alone (Redis: what decides whether this process
// can serve, so Kubernetes does not restart it while Prefect is down); with
// ?verbose it reports every dependency in checks, with latency.
func readyz(ready func(*gin.Context) error, checks []obs.Check) gin.HandlerFunc {
	verbose := obs.ReadyHandler(checks)
	plain := h(func(c *gin.Context) (any, error) {
		if ready != nil {
			if err := ready(c); err != nil {
				return nil, apperr.Wrap(apperr.Unavailable, err, "not ready: %v", err)
			}
		}
		return gin.H{"status": "ok"}, nil
	})
	return func(c *gin.Context) {
		if checks != nil && c.Request.URL.Query().Has("verbose") {
			verbose.ServeHTTP(c.Writer, c.Request)
			return
		}
		plain(c)
	}
}
