package obs

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
)

// Check is one dependency probe. A Required dependency makes the process
// unready when it fails; the others are only reported.
type Check struct {
	Name     string
	Required bool
	Probe    func(ctx context.Context) error
	// Detail, if set, adds the dependency's state to /readyz?verbose.
	Detail func(ctx context.Context) any
}

// Result is one probe's outcome.
type Result struct {
	Name      string  `json:"name"`
	OK        bool    `json:"ok"`
	Required  bool    `json:"required"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
	Detail    any     `json:"detail,omitempty"`
}

// Report is /readyz?verbose's body. Status is "ok" (all answer), "degraded"
// (only optional dependencies fail: the process still serves) or
// "unavailable" (a required one fails: the answer is 503).
type Report struct {
	Status string   `json:"status"`
	Checks []Result `json:"checks"`
}

// ProbeTimeout bounds each probe.
const ProbeTimeout = 2 * time.Second

// Run probes every check in parallel, each within ProbeTimeout.
func Run(ctx context.Context, checks []Check) Report {
	out := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
			defer cancel()
			start := time.Now()
			err := c.Probe(pctx)
			r := Result{Name: c.Name, OK: err == nil, Required: c.Required,
				LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				r.Error = err.Error()
			}
			if c.Detail != nil {
				r.Detail = c.Detail(pctx)
			}
			out[i] = r
		}()
	}
	wg.Wait()
	rep := Report{Status: "ok", Checks: out}
	for _, r := range out {
		switch {
		case !r.OK && r.Required:
			rep.Status = "unavailable"
		case !r.OK && rep.Status == "ok":
			rep.Status = "degraded"
		}
	}
	return rep
}

// Checks are the dependencies of the api and the worker: Redis (required:
// nothing works without it), Prefect (reported only, so an orchestrator does
// not restart the proxy while Prefect is down), and Django when the relay is
// on (reported only).
func Checks(cfg config.Config, rdb redis.UniversalClient, pc *prefect.Client) []Check {
	cs := []Check{RedisCheck(rdb)}
	if pc != nil {
		cs = append(cs, PrefectCheck(pc))
	}
	if cfg.RelayEnabled() && cfg.DjangoWebhookURL != nil {
		cs = append(cs, DjangoCheck(cfg.DjangoWebhookURL))
	}
	return cs
}

// RedisCheck pings Redis.
func RedisCheck(rdb redis.UniversalClient) Check {
	return Check{Name: "redis", Required: true, Probe: func(ctx context.Context) error {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return errors.New("redis not reachable: " + err.Error())
		}
		return nil
	}}
}

// PrefectCheck asks Prefect's /health once (no retries), with its
// configured auth.
func PrefectCheck(pc *prefect.Client) Check {
	return Check{Name: "prefect", Probe: func(ctx context.Context) error {
		return pc.Do(ctx, http.MethodGet, "/health", nil, nil, false)
	}}
}

// DjangoCheck opens (and closes) a TCP connection to the host of Django's
// webhook URL: whether Django answers, without sending it a notification.
func DjangoCheck(u *url.URL) Check {
	addr := djangoAddr(u)
	return Check{Name: "django", Probe: func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}}
}

func djangoAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// ReadyHandler answers /readyz: plain, only the required checks decide (200 or
// 503 with a detail); with ?verbose, every check runs and the Report is the
// body, still 503 only when a required one fails.
func ReadyHandler(checks []Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verbose := r.URL.Query().Has("verbose")
		run := checks
		if !verbose {
			run = nil
			for _, c := range checks {
				if c.Required {
					run = append(run, c)
				}
			}
		}
		rep := Run(r.Context(), run)
		w.Header().Set("Content-Type", "application/json")
		if rep.Status == "unavailable" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		switch {
		case verbose:
			_ = json.NewEncoder(w).Encode(rep)
		case rep.Status == "unavailable":
			_ = json.NewEncoder(w).Encode(map[string]string{"detail": "not ready: " + firstError(rep)})
		default:
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}
	})
}

func firstError(rep Report) string {
	for _, r := range rep.Checks {
		if !r.OK && r.Required {
			return r.Error
		}
	}
	return ""
}

// RequireToken guards h with METRICS_TOKEN: Authorization: Bearer <token>.
// An empty token leaves h open.
func RequireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"detail":"missing or invalid metrics token"}`))
			return
		}
		h.ServeHTTP(w, r)
	})
}
