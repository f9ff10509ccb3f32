package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

// Connection limits that are not configuration.
const (
	// readHeaderTimeout bounds the arrival of a request's headers.
	readHeaderTimeout = 10 * time.Second
	// maxHeaderBytes bounds a request's headers (Go's default is 1 MiB);
	// Django sends a few hundred bytes.
	maxHeaderBytes = 64 << 10
	// answerGrace is what a route gets, past its upstream timeout or its
	// deliberate wait, to write its answer.
	answerGrace = 5 * time.Second
)

// Limits are an HTTP server's connection limits. Together they close a
// connection that trickles its request or idles, while the routes that wait
// on purpose (a synchronous write, a long-poll) extend their own deadline
// (holdFor) and still answer.
type Limits struct {
	// ReadHeader bounds the arrival of the headers.
	ReadHeader time.Duration
	// Request is the read and the write deadline of a request, counted from
	// its first byte: its body must arrive, and an ordinary route answer,
	// within it. (One value for both: once the body is read, net/http keeps
	// reading in the background, and a read deadline that passes cancels
	// the request's context.)
	Request time.Duration
	// Idle closes a keep-alive connection without a new request.
	Idle time.Duration
	// MaxHeaderBytes bounds the request headers (431 above it).
	MaxHeaderBytes int
}

// LimitsFor derives the limits from the configuration. An ordinary route
// answers within PREFECT_API_TIMEOUT (retries and paging included), so a
// request gets that plus answerGrace; HTTP_IDLE_TIMEOUT bounds idle
// keep-alive connections.
func LimitsFor(cfg config.Config) Limits {
	req := cfg.PrefectTimeout + answerGrace
	return Limits{
		ReadHeader:     min(readHeaderTimeout, req),
		Request:        req,
		Idle:           cfg.HTTPIdleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
	}
}

// holdFor extends the request's read and write deadlines for a route about to
// wait on purpose for up to wait (a synchronous write's JOB_WAIT_TIMEOUT, a
// long-poll's ?wait=), leaving answerGrace to answer. Called after the body is
// read, so a trickled body is still cut at Limits.Request.
func holdFor(c *gin.Context, wait time.Duration) {
	deadline := time.Now().Add(wait + answerGrace)
	rc := http.NewResponseController(c.Writer)
	// ErrNotSupported (a test's recorder) means there is no deadline to move.
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
}

// Serve runs an HTTP server for h on addr with the given limits until ctx
// ends; ready (if non-nil) receives the bound address.
func Serve(ctx context.Context, addr string, h http.Handler, lim Limits, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(ln.Addr())
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeader,
		ReadTimeout:       lim.Request,
		WriteTimeout:      lim.Request,
		IdleTimeout:       lim.Idle,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
