package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

// requireToken guards Django-facing routes with PROXY_API_TOKEN. An empty
// token switches the guard off (the Python proxy had no auth, and Django only
// starts sending the header once an operator sets both sides).
func requireToken(token string) gin.HandlerFunc {
	if token == "" {
		return func(c *gin.Context) { c.Next() }
	}
	return func(c *gin.Context) {
		if !bearerMatches(c, token) {
			c.Header("WWW-Authenticate", `Bearer realm="prefect-proxy"`)
			writeError(c, apperr.New(apperr.Unauthorized, "missing or invalid bearer token"))
			return
		}
		c.Next()
	}
}

// adminOnly guards operator routes (/monitoring/, relay admin) with
// ADMIN_TOKEN. With no ADMIN_TOKEN configured the routes are off: 404, so an
// unconfigured deployment exposes nothing. The token is accepted as a bearer
// header, or as HTTP basic auth (any user, token as password) so a browser can
// open /monitoring/.
func adminOnly(token string) gin.HandlerFunc {
	if token == "" {
		return func(c *gin.Context) {
			writeError(c, apperr.New(apperr.NotFound, "Not Found: admin routes are off (ADMIN_TOKEN is not set)"))
		}
	}
	return func(c *gin.Context) {
		if bearerMatches(c, token) {
			c.Next()
			return
		}
		if _, pass, ok := c.Request.BasicAuth(); ok && tokenEqual(pass, token) {
			c.Next()
			return
		}
		c.Header("WWW-Authenticate", `Basic realm="prefect-proxy admin"`)
		writeError(c, apperr.New(apperr.Unauthorized, "missing or invalid admin token"))
	}
}

// bearerMatches reports whether the request presents "Authorization: Bearer <token>".
func bearerMatches(c *gin.Context, token string) bool {
	got, ok := bearerToken(c)
	return ok && tokenEqual(got, token)
}

// bearerToken extracts the bearer credential; the scheme is case-insensitive (RFC 6750).
func bearerToken(c *gin.Context) (string, bool) {
	v := c.GetHeader("Authorization")
	scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// tokenEqual compares in constant time. Hashing first makes the comparison
// independent of the lengths too.
func tokenEqual(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
