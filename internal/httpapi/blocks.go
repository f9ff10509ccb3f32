package httpapi

import (
	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// airbyteServerBlockID is route 2, GET /proxy/blocks/airbyte/server/{blockname}:
// {"block_id": "<uuid>" | null}.
func airbyteServerBlockID(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		return s.AirbyteServerBlockID(c.Request.Context(), c.Param("blockname"))
	}
}

// airbyteServerBlock is route 3, GET /proxy/blocks/airbyte/server/block/{blockname}:
// {host, port, version, token}.
func airbyteServerBlock(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		return s.AirbyteServerBlock(c.Request.Context(), c.Param("blockname"))
	}
}

// secretBlock is route 8, GET /proxy/blocks/secret/{blockname}: {block_id, block_name}.
func secretBlock(s *proxy.Service) handler {
	return func(c *gin.Context) (any, error) {
		return s.SecretBlock(c.Request.Context(), c.Param("blockname"))
	}
}

// secretBlockContents is route 7, GET /proxy/blocks/secret/{blockname}/contents:
// a secret's value. Django never calls it, and it hands out any credential to
// whoever reaches the port, so it is off unless PROXY_API_TOKEN is set and the
// caller presents it (checked here too, not only by the /proxy group guard, so
// the route can never be mounted open by mistake).
func secretBlockContents(s *proxy.Service, token string) handler {
	return func(c *gin.Context) (any, error) {
		if token == "" {
			return nil, apperr.New(apperr.Forbidden,
				"secret block contents are not served unless PROXY_API_TOKEN is set and presented as a bearer token")
		}
		if !bearerMatches(c, token) {
			c.Header("WWW-Authenticate", `Bearer realm="prefect-proxy"`)
			return nil, apperr.New(apperr.Unauthorized, "missing or invalid bearer token")
		}
		c.Header("Cache-Control", "no-store")
		return s.SecretBlockContents(c.Request.Context(), c.Param("blockname"))
	}
}
