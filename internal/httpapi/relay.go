package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

// relayIngest is POST /webhooks/v1/notification/: relay.Ingress.Ingest
// checks the key, parses and queues durably; this answers 202 (200 for a
// state RELAY_STATES ignores) or maps its error.
func relayIngest(rel *relay.API) gin.HandlerFunc {
	return h(func(c *gin.Context) (any, error) {
		var in *relay.Ingress // nil: the relay is off
		if rel != nil {
			in = rel.Ingress
		}
		out, err := in.Ingest(c.Request.Context(), c.GetHeader("X-Notification-Key"), c.Request.Body)
		if err != nil {
			return nil, relayIngestErr(err)
		}
		if out.Status == "ignored" {
			return out, nil
		}
		c.JSON(http.StatusAccepted, out)
		return nil, nil
	})
}

// relayIngestErr is the answer to each of Ingest's errors.
func relayIngestErr(err error) error {
	var pe *relay.ParseError
	var qe *relay.QueueError
	switch {
	case errors.Is(err, relay.ErrOff):
		return apperr.New(apperr.Unavailable, "%s", err)
	case errors.Is(err, relay.ErrUnauthorized):
		return apperr.New(apperr.Unauthorized, "%s", err)
	case errors.Is(err, relay.ErrTooLarge):
		return apperr.New(apperr.TooLarge, "%s", err)
	case errors.As(err, &pe):
		return apperr.Wrap(apperr.BadRequest, err, "unparseable notification: %s", pe.Message)
	case errors.As(err, &qe):
		return apperr.Wrap(apperr.Unavailable, err, "could not queue the notification (Redis unavailable)")
	}
	return apperr.Wrap(apperr.BadRequest, err, "could not read the notification body")
}

// relayDeadLetters lists archived deliveries: GET ...?page=1&size=100.
func relayDeadLetters(rel *relay.API) handler {
	return func(c *gin.Context) (any, error) {
		if rel == nil || rel.Admin == nil {
			return nil, apperr.New(apperr.Unavailable, "relay is not running")
		}
		page, err1 := strconv.Atoi(c.DefaultQuery("page", "1"))
		size, err2 := strconv.Atoi(c.DefaultQuery("size", "100"))
		if err1 != nil || err2 != nil || page < 1 || size < 1 || size > 1000 {
			return nil, apperr.Validation(apperr.Field("value_error", "page must be ≥ 1 and size in 1..1000", "query"))
		}
		items, total, err := rel.Admin.List(page, size)
		if err != nil {
			return nil, apperr.Wrap(apperr.Unavailable, err, "could not read the relay queue")
		}
		return gin.H{"dead_letters": items, "total": total, "page": page, "size": size}, nil
	}
}

// relayReplay re-queues one archived delivery (its Webhook-Id is unchanged).
func relayReplay(rel *relay.API) handler {
	return func(c *gin.Context) (any, error) {
		if rel == nil || rel.Admin == nil {
			return nil, apperr.New(apperr.Unavailable, "relay is not running")
		}
		id := c.Param("id")
		if err := rel.Admin.Replay(id); err != nil {
			if errors.Is(err, relay.ErrNotFound) {
				return nil, apperr.New(apperr.NotFound, "no archived delivery %q", id)
			}
			return nil, apperr.Wrap(apperr.Unavailable, err, "could not replay the delivery")
		}
		return gin.H{"replayed": 1, "id": id}, nil
	}
}

// relayReplayAll re-queues every archived delivery.
func relayReplayAll(rel *relay.API) handler {
	return func(c *gin.Context) (any, error) {
		if rel == nil || rel.Admin == nil {
			return nil, apperr.New(apperr.Unavailable, "relay is not running")
		}
		n, err := rel.Admin.ReplayAll()
		if err != nil {
			return nil, apperr.Wrap(apperr.Unavailable, err, "could not replay the deliveries")
		}
		return gin.H{"replayed": n}, nil
	}
}
