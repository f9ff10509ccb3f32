package httpapi

import (
	_ "embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	swaggerfiles "github.com/swaggo/files/v2"
)

// openAPIDoc describes the whole HTTP surface (the Django contract, jobs,
// relay, operations). It is a hand-maintained OpenAPI 3.1 document: edit it
// with the routes. docs_test.go fails when a registered route is missing, and
// spec_test.go when an answer does not match what the document says.
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

// docsCSP keeps the reference page on this origin: the browser itself refuses
// any script, style, font or request from elsewhere, so the page works the
// same inside a private network as on the internet. Swagger UI sets inline
// style attributes and shows data: images; it needs nothing else.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// docsPage serves GET /docs: Swagger UI over /openapi.json. Its JavaScript and
// CSS are the swagger-ui distribution that github.com/swaggo/files embeds,
// compiled into the binary and served under /docs/assets/ (no CDN).
func docsPage() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Content-Security-Policy", docsCSP)
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(docsHTML))
	}
}

// docsAssets serves GET /docs/assets/*file: docs-init.js (ours) and the
// swagger-ui files.
func docsAssets() gin.HandlerFunc {
	files := http.FileServer(http.FS(swaggerfiles.FS))
	return func(c *gin.Context) {
		name := strings.TrimPrefix(c.Param("file"), "/")
		c.Header("Content-Security-Policy", docsCSP)
		if name == "docs-init.js" {
			c.Header("Cache-Control", "no-cache")
			c.Data(http.StatusOK, "text/javascript; charset=utf-8", []byte(docsInitJS))
			return
		}
		// Only the files the page uses; the index.html and petstore
		// initializer of the distribution are not ours to serve.
		if !docsAssetNames[name] {
			c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"detail": "Not Found"})
			return
		}
		if _, err := fs.Stat(swaggerfiles.FS, name); err != nil {
			c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"detail": "Not Found"})
			return
		}
		// The files change only with the binary.
		c.Header("Cache-Control", "public, max-age=3600")
		req := c.Request.Clone(c.Request.Context())
		req.URL.Path = "/" + name
		req.URL.RawPath = ""
		files.ServeHTTP(c.Writer, req)
	}
}

var docsAssetNames = map[string]bool{
	"swagger-ui.css":       true,
	"swagger-ui-bundle.js": true,
	"favicon-32x32.png":    true,
	"favicon-16x16.png":    true,
}

const docsHTML = `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>prefect-proxy API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/docs-init.js"></script>
</body>
</html>
`

// docsInitJS starts Swagger UI without its top bar (a URL box for other
// documents) and without the online validator badge (a request to
// validator.swagger.io).
const docsInitJS = `window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    docExpansion: "list",
    tryItOutEnabled: false,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
`
