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

// writeRoutes is the glue between a write route and its job: decode, enqueue,
// wait, answer exactly as the Python proxy would.
type writeRoutes struct {
	jobs *jobs.Client
	wait time.Duration // JOB_WAIT_TIMEOUT
}

// write serves op: decode in the api, run as a job, answer with its result.
func write[P any](w writeRoutes, op jobs.Op[P]) gin.HandlerFunc {
	return func(c *gin.Context) {
		if w.jobs == nil || op.Decode == nil {
			writeError(c, apperr.New(apperr.Unavailable, "the job queue is not configured"))
			return
		}
		body, err := readWriteBody(c)
		if err != nil {
			writeError(c, err)
			return
		}
		payload, err := op.Decode(pathParams(c), body)
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
		e, err := jobs.Enqueue(c.Request.Context(), w.jobs, op, payload,
			jobs.EnqueueOptions{IdempotencyKey: key, RequestID: c.GetString("request_id")})
		if err != nil {
			writeError(c, err)
			return
		}
		c.Set("job_id", e.ID) // for the access log
		w.answer(c, e, pref)
	}
}

func pathParams(c *gin.Context) map[string]string {
	params := make(map[string]string, len(c.Params))
	for _, p := range c.Params {
		params[p.Key] = p.Value
	}
	return params
}

// readWriteBody reads a write's body, at most maxWriteBody bytes.
func readWriteBody(c *gin.Context) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxWriteBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apperr.New(apperr.TooLarge, "request body larger than %d bytes", maxWriteBody)
		}
		return nil, apperr.Wrap(apperr.Invalid, err, "cannot read the request body")
	}
	return body, nil
}

// waitFor is how long to wait for the job as the client prefers, and the
// preferences honoured.
func (w writeRoutes) waitFor(pref prefer) (time.Duration, []string) {
	switch {
	case pref.waitSet && pref.wait <= w.wait:
		return pref.wait, []string{"wait=" + strconv.Itoa(int(pref.wait/time.Second))}
	case pref.async && !pref.waitSet:
		return 0, nil
	}
	return w.wait, nil
}

// answer waits for the queued job as preferred and answers: its result once
// done, 202 for respond-async, else 504 naming the job.
func (w writeRoutes) answer(c *gin.Context, e jobs.Enqueued, pref prefer) {
	wait, applied := w.waitFor(pref)
	var job *jobs.Job
	if wait > 0 || e.Existing {
		// An idempotent repeat of a finished job gets its answer at once,
		// even when it asked for respond-async.
		holdFor(c, wait)
		var err error
		if job, err = w.jobs.Wait(c.Request.Context(), e, wait); err != nil {
			// The job is queued and goes on: say where to find it.
			ae := *apperr.From(err)
			ae.Extra = map[string]any{"job_id": e.ID}
			c.Header("Location", "/jobs/"+e.ID)
			writeError(c, &ae)
			return
		}
	}
	location := "/jobs/" + e.ID
	if pref.async && (job == nil || !job.Done()) {
		applied = append([]string{"respond-async"}, applied...)
	}
	if applied != nil {
		c.Header("Preference-Applied", strings.Join(applied, ", "))
	}
	switch {
	case job != nil && job.Done():
		c.Header("Job-Id", e.ID)
		body := job.Body
		if len(body) == 0 {
			body = []byte("null")
		}
		c.Data(job.Status, "application/json", body)
	case pref.async:
		c.Header("Location", location)
		c.JSON(http.StatusAccepted, gin.H{"job_id": e.ID, "status_url": location})
	default:
		c.Header("Location", location)
		writeError(c, &apperr.Error{
			Code: apperr.Timeout,
			Message: fmt.Sprintf("the job did not finish within %s; it goes on, its result will be at %s",
				wait, location),
			Extra: map[string]any{"job_id": e.ID},
		})
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
