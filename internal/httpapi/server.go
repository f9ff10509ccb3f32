// Package httpapi is the Gin HTTP surface of the api process. routes.go lists
// every route; handlers are small functions that take their dependencies and
// return (body, error); one place turns errors into {"detail": ...}.
package httpapi

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/obs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
	"github.com/DalgoT4D/prefect-proxy-go/internal/runcache"
	"github.com/DalgoT4D/prefect-proxy-go/internal/writes"
)

// Deps are what the handlers need. Optional parts may be nil; their routes
// then answer 503.
type Deps struct {
	Config config.Config
	Log    *logrus.Logger
	Proxy  *proxy.Service
	// RunCache answers reads of finished flow runs from Redis; nil: off.
	RunCache *runcache.Cache
	Metrics  *Metrics
	// Ready reports whether dependencies (Redis, Prefect) are usable.
	Ready func(*gin.Context) error
	// Checks are every dependency /readyz?verbose reports on (Redis, Prefect,
	// Django); nil: ?verbose answers as plain /readyz.
	Checks []obs.Check
	// Jobs enqueues and reads write jobs; nil: write routes answer 503.
	Jobs *jobs.Client
	// Ops are the write operations the write routes enqueue.
	Ops *writes.Ops
	// Monitoring is asynqmon, mounted at /monitoring/ behind ADMIN_TOKEN.
	Monitoring http.Handler
	// Relay is the notification relay's ingress and dead-letter admin; nil:
	// its routes answer 503.
	Relay *relay.API
}

// New builds the api's http.Handler.
func New(d Deps) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.Use(requestID(), recoverJSON(d.Log), accessLog(d.Log, d.Metrics))
	r.NoRoute(func(c *gin.Context) { writeError(c, apperr.New(apperr.NotFound, "Not Found")) })
	r.NoMethod(func(c *gin.Context) {
		// Written directly: apperr has no 405, and a status set after the
		// JSON body is written is ignored (this answered 422).
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, gin.H{"detail": "Method Not Allowed"})
	})
	addRoutes(r, d)
	return stripTrailingSlash(r)
}

// stripTrailingSlash lets both slash forms of every path reach the same route
// without a redirect: Django sends some paths with and some without a slash,
// and a redirected POST loses its body.
func stripTrailingSlash(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// asynqmon's UI resolves its assets against /monitoring/: leave its
		// paths as the browser sent them.
		if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") && !strings.HasPrefix(p, "/monitoring/") {
			r.URL.Path = strings.TrimRight(p, "/")
			if r.URL.Path == "" {
				r.URL.Path = "/"
			}
			r.URL.RawPath = ""
		}
		next.ServeHTTP(w, r)
	})
}

// Metrics are the api's Prometheus collectors, registered on an injected registry.
type Metrics struct {
	Registry *prometheus.Registry
	requests *prometheus.HistogramVec
}

// NewMetrics registers the HTTP collectors on reg.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proxy_http_request_duration_seconds",
			Help:    "Latency of HTTP requests by route template, method and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "status"}),
	}
	reg.MustRegister(m.requests)
	return m
}
