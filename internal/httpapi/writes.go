package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// maxWriteBody bounds a write route's request body (Django's largest is a
// deployment's task list, a few KB).
const maxWriteBody = 1 << 20

// writes is the glue between a write route and its job: decode, enqueue,
// wait, answer exactly as the Python proxy would.
type writes struct {
	jobs *jobs.Client
	wait time.Duration // JOB_WAIT_TIMEOUT
}

// route serves the write operation named op (proxy.WriteOps key).
func (w writes) route(opName string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if w.jobs == nil {
			writeError(c, apperr.New(apperr.Unavailable, "the job queue is not configured"))
			return
		}
		op, ok := w.jobs.Op(opName)
		if !ok {
			writeError(c, apperr.New(apperr.NotImplemented, "%s is not implemented yet", opName))
			return
		}
		params := make(map[string]string, len(c.Params))
		for _, p := range c.Params {
			params[p.Key] = p.Value
		}
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxWriteBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(c, apperr.New(apperr.TooLarge, "request body larger than %d bytes", maxWriteBody))
				return
			}
			writeError(c, apperr.Wrap(apperr.Invalid, err, "cannot read the request body"))
			return
		}
		payload, err := op.Decode(params, body)
		if err != nil {
			writeError(c, err)
			return
		}
		key := c.GetHeader("Idempotency-Key")
		if err := checkIdempotencyKey(key); err != nil {
			writeError(c, err)
			return
		}
		pref := parsePrefer(c.Request.Header.Values("Prefer"))
		c.Header("Vary", "Prefer")

		e, err := w.jobs.Enqueue(c.Request.Context(), op, payload, jobs.EnqueueOptions{IdempotencyKey: key, RequestID: c.GetString("request_id")})
		if err != nil {
			writeError(c, err)
			return
		}
		c.Set("job_id", e.ID) // for the access log
		wait, applied := w.wait, []string(nil)
		if pref.waitSet && pref.wait <= w.wait {
			wait = pref.wait
			applied = append(applied, "wait="+strconv.Itoa(int(pref.wait/time.Second)))
		} else if pref.async && !pref.waitSet {
			wait = 0
		}
		var job *jobs.Job
		if wait > 0 || e.Existing {
			// An idempotent repeat of a finished job gets its answer at once,
			// even when it asked for respond-async.
			job, err = w.jobs.Wait(c.Request.Context(), e, wait)
			if err != nil {
				// The job is queued and goes on: say where to find it.
				ae := *apperr.From(err)
				ae.Extra = map[string]any{"job_id": e.ID}
				c.Header("Location", "/jobs/"+e.ID)
				writeError(c, &ae)
				return
			}
		}
		location := "/jobs/" + e.ID
		switch {
		case job != nil && job.Done():
			if applied != nil {
				c.Header("Preference-Applied", strings.Join(applied, ", "))
			}
			c.Header("Job-Id", e.ID)
			body := job.Body
			if len(body) == 0 {
				body = []byte("null")
			}
			c.Data(job.Status, "application/json", body)
		case pref.async:
			c.Header("Preference-Applied", strings.Join(append([]string{"respond-async"}, applied...), ", "))
			c.Header("Location", location)
			c.JSON(http.StatusAccepted, gin.H{"job_id": e.ID, "status_url": location})
		default:
			if applied != nil {
				c.Header("Preference-Applied", strings.Join(applied, ", "))
			}
			c.Header("Location", location)
			writeError(c, &apperr.Error{
				Code: apperr.Timeout,
				Message: fmt.Sprintf("the job did not finish within %s; it goes on, its result will be at %s",
					wait, location),
				Extra: map[string]any{"job_id": e.ID},
			})
		}
	}
}

// prefer is what we understand of an RFC 7240 Prefer header.
type prefer struct {
	async   bool
	wait    time.Duration
	waitSet bool
}

// parsePrefer reads "respond-async" and "wait=N" (seconds); anything else,
// or a malformed value, is ignored as RFC 7240 asks.
func parsePrefer(values []string) prefer {
	var p prefer
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			token, _, _ := strings.Cut(item, ";") // parameters are not used
			name, val, _ := strings.Cut(strings.TrimSpace(token), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			val = strings.Trim(strings.TrimSpace(val), `"`)
			switch name {
			case "respond-async":
				p.async = true
			case "wait":
				if d, ok := deltaSeconds(val); ok && !p.waitSet {
					p.wait, p.waitSet = d, true
				}
			}
		}
	}
	return p
}

// deltaSeconds parses RFC 7240's delta-seconds (digits only). A huge value
// is capped rather than overflowing into a negative duration.
func deltaSeconds(s string) (time.Duration, bool) {
	const maxSeconds = 1 << 30
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = min(n*10+int(s[i]-'0'), maxSeconds)
	}
	return time.Duration(n) * time.Second, s != ""
}

// checkIdempotencyKey accepts up to 255 visible ASCII characters.
func checkIdempotencyKey(k string) error {
	if k == "" {
		return nil
	}
	bad := len(k) > 255
	for i := 0; i < len(k) && !bad; i++ {
		bad = k[i] < 0x21 || k[i] > 0x7e
	}
	if bad {
		return apperr.Validation(apperr.Field("value_error",
			"Idempotency-Key must be 1 to 255 visible ASCII characters", "header", "Idempotency-Key"))
	}
	return nil
}
