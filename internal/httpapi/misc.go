package httpapi

import (
	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// prefectVersion is route 34: a bare JSON string, or null when Prefect is down.
func prefectVersion(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) { return s.PrefectVersion(c.Request.Context()), nil }
}
