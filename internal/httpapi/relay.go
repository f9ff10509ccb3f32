package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/apperr"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

// relayBodyLimit bounds an inbound notification; real ones are < 2 KiB.
const relayBodyLimit = 1 << 20

// relayIngest is POST /webhooks/v1/notification/: check the key, parse, queue
// durably, then answer 202 — in milliseconds, whatever Django is doing.
func relayIngest(rel *relay.API, log *logrus.Logger) gin.HandlerFunc {
	return h(func(c *gin.Context) (any, error) {
		if rel == nil || rel.Ingress == nil {
			return nil, apperr.New(apperr.Unavailable,
				"relay is not configured: set PREFECT_NOTIFICATIONS_WEBHOOK_KEY (the key Django checks) to turn it on")
		}
		in := rel.Ingress
		if !in.KeyMatches(c.GetHeader("X-Notification-Key")) {
			in.Metrics.Inbound("unauthorized")
			return nil, apperr.New(apperr.Unauthorized, "missing or invalid X-Notification-Key")
		}
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, relayBodyLimit))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				in.Metrics.Inbound("too_large")
				return nil, apperr.New(apperr.TooLarge, "notification body exceeds 1 MiB")
			}
			return nil, apperr.Wrap(apperr.BadRequest, err, "could not read the notification body")
		}
		out, err := in.Accept(c.Request.Context(), body)
		var pe *relay.ParseError
		switch {
		case errors.As(err, &pe):
			// Prefect never retries a webhook: this line and the
			// relay_inbound_total{result="unparseable"} counter are all that
			// is left of the notification.
			log.WithFields(logrus.Fields{
				"request_id": c.GetString("request_id"), "bytes": len(body),
				"content_type": c.GetHeader("Content-Type"), "reason": pe.Message,
			}).Warn("relay: unparseable notification dropped")
			return nil, apperr.Wrap(apperr.BadRequest, err, "unparseable notification: %s", pe.Message)
		case err != nil:
			return nil, apperr.Wrap(apperr.Unavailable, err, "could not queue the notification (Redis unavailable)")
		}
		if out.Status == "ignored" {
			return out, nil
		}
		c.JSON(http.StatusAccepted, out)
		return nil, nil
	})
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
