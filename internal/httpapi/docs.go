package httpapi

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPIDoc describes the whole HTTP surface (the Django contract, jobs,
// relay, operations). It is a hand-maintained OpenAPI 3.1 document: edit it
// with the routes (docs_test.go fails when a registered route is missing).
//
//go:embed openapi.json
var openAPIDoc []byte

// openAPI serves GET /openapi.json.
func openAPI() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "application/json", openAPIDoc)
	}
}

// docsPage renders /openapi.json with Redoc (pinned, from the jsDelivr npm CDN; the api
// ships no JavaScript of its own).
func docsPage() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(docsHTML))
	}
}

const docsHTML = `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>prefect-proxy API</title>
</head>
<body>
  <redoc spec-url="/openapi.json"></redoc>
  <script src="https://cdn.jsdelivr.net/npm/redoc@2.5.0/bundles/redoc.standalone.js"></script>
  <noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body>
</html>
`
