package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
)

const requestIDHeader = "X-Request-Id"

func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(requestIDHeader)
		if id == "" || len(id) > 128 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Set("request_id", id)
		c.Header(requestIDHeader, id)
		c.Next()
	}
}

// recoverJSON turns a panic into a 500 with a JSON detail; the stack goes to
// the log, never to the client.
func recoverJSON(log *logrus.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				log.WithFields(logrus.Fields{
					"request_id": c.GetString("request_id"),
					"panic":      fmt.Sprint(r),
					"stack":      string(debug.Stack()),
				}).Error("panic in handler")
				writeError(c, apperr.New(apperr.Internal, "internal error"))
			}
		}()
		c.Next()
	}
}

// accessLog writes one line per request and observes its latency.
func accessLog(log *logrus.Logger, m *Metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		elapsed := time.Since(start)
		if m != nil {
			m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Observe(elapsed.Seconds())
		}
		if route == "/livez" || route == "/readyz" || route == "/metrics" {
			return
		}
		fields := logrus.Fields{
			"request_id": c.GetString("request_id"),
			"method":     c.Request.Method,
			"route":      route,
			"status":     status,
			"latency_ms": float64(elapsed.Microseconds()) / 1000,
			"org":        capLogValue(c.GetHeader("x-ddp-org")),
		}
		if id := c.GetString("job_id"); id != "" {
			fields["job_id"] = id
		}
		if len(c.Errors) > 0 {
			// The cause is ours to read; it never carries request bodies.
			fields["error"] = c.Errors.Last().Err.Error()
		}
		// The entry takes fields as they are: log.WithFields would copy them
		// (and logrus copies once more to write); a line per request counts.
		entry := &logrus.Entry{Logger: log, Data: fields}
		switch {
		case status >= 500:
			entry.Error("request")
		case status >= 400:
			entry.Warn("request")
		default:
			entry.Info("request")
		}
	}
}

// maxLoggedValue bounds a client-supplied value written to the log: a header
// can be as large as the server's header limit, and a log line per request
// must stay a line.
const maxLoggedValue = 256

// capLogValue returns v, or its first maxLoggedValue bytes (cut on a UTF-8
// boundary) followed by a marker giving the full length.
func capLogValue(v string) string {
	if len(v) <= maxLoggedValue {
		return v
	}
	cut := maxLoggedValue
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "…[truncated, " + strconv.Itoa(len(v)) + " bytes]"
}
