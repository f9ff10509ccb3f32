package httpapi

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
)

// maxJobWait caps GET /jobs/{id}?wait=.
const maxJobWait = time.Minute

// getJob is GET /jobs/{id}: the job's state, its result or its error;
// ?wait=10s long-polls until it is done.
func getJob(jc *jobs.Client) handler {
	return func(c *gin.Context) (any, error) {
		if jc == nil {
			return nil, apperr.New(apperr.Unavailable, "the job queue is not configured")
		}
		wait, err := parseWait(c.Query("wait"))
		if err != nil {
			return nil, err
		}
		holdFor(c, wait)
		job, err := jc.Wait(c.Request.Context(), jobs.Enqueued{ID: c.Param("id")}, wait)
		if errors.Is(err, jobs.ErrNotFound) {
			return nil, apperr.New(apperr.NotFound, "job not found (unknown, or expired after JOB_RETENTION)")
		}
		if err != nil {
			return nil, err
		}
		return job.View(), nil
	}
}

// parseWait accepts a Go duration ("10s") or a number of seconds ("10").
func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) {
			return 0, apperr.Validation(apperr.Field("value_error",
				"wait must be a duration like 10s or a number of seconds", "query", "wait"))
		}
		// Clamp before converting: a huge float overflows into a negative duration.
		d = time.Duration(max(min(f, maxJobWait.Seconds()), -1) * float64(time.Second))
	}
	if d < 0 {
		return 0, apperr.Validation(apperr.Field("value_error", "wait must not be negative", "query", "wait"))
	}
	return min(d, maxJobWait), nil
}
