package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

func livez() gin.HandlerFunc {
	return func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }
}

func readyz(ready func(*gin.Context) error) gin.HandlerFunc {
	return h(func(c *gin.Context) (any, error) {
		if ready != nil {
			if err := ready(c); err != nil {
				return nil, apperr.Wrap(apperr.Unavailable, err, "not ready: %v", err)
			}
		}
		return gin.H{"status": "ok"}, nil
	})
}
