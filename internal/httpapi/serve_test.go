package httpapi

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// A route that waits on purpose past Limits.Request answers only because it
// extends its deadlines (holdFor); without that the server drops it. This is
// the relation the api relies on for synchronous writes and long-polls.
func TestHoldForOutlivesTheRequestLimit(t *testing.T) {
	t.Parallel()
	const limit = 500 * time.Millisecond
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	ctxErr := make(chan error, 4)
	wait := func(hold bool) gin.HandlerFunc {
		return func(c *gin.Context) {
			if hold {
				holdFor(c, 3*limit)
			}
			time.Sleep(3 * limit)
			ctxErr <- c.Request.Context().Err()
			c.JSON(200, gin.H{"ok": true})
		}
	}
	r.GET("/held", wait(true))
	r.GET("/unheld", wait(false))

	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, "127.0.0.1:0", r, Limits{ReadHeader: limit, Request: limit, Idle: limit, MaxHeaderBytes: 4096},
			func(a net.Addr) { addr <- a.String() })
	}()
	base := "http://" + <-addr
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	cases := []struct {
		name     string
		path     string
		answered bool
	}{
		{"held route answers after its wait", "/held", true},
		{"unheld route is cut at the request limit", "/unheld", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(base + tc.path)
			answered := err == nil && resp.StatusCode == 200
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if answered != tc.answered {
				t.Fatalf("answered = %t (err %v), want %t", answered, err, tc.answered)
			}
			if err := <-ctxErr; tc.answered && err != nil {
				t.Fatalf("held request's context ended early: %v", err)
			}
		})
	}
}
