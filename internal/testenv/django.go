package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"
)

// djangoMessage is Django's regex (ddpui/core/webhooks/webhook_functions.py,
// get_flowrun_id_and_state), applied with re.search: not anchored.
var djangoMessage = regexp.MustCompile(`Flow run ([a-zA-Z0-9-]+) with id ([a-zA-Z0-9-]+) entered state ([a-zA-Z0-9]+)`)

// DjangoRequest is one notification the test Django received.
type DjangoRequest struct {
	Header http.Header
	Body   []byte
	Status int // what Django answered
	// Accepted is true when Django would have queued handle_prefect_webhook:
	// key matched, body parsed, a flow run id was found.
	Accepted  bool
	FlowRunID string
	State     string // the state NAME from the message ("unknown" for JSON bodies)
	At        time.Time
}

// Django is a test double of Django's POST /webhooks/v1/notification/ that
// applies Django's exact key check and message parsing and records every
// request.
type Django struct {
	// URL is the full notification URL (with the trailing slash Django needs).
	URL    string
	Server *httptest.Server

	key    *string // nil: PREFECT_NOTIFICATIONS_WEBHOOK_KEY unset in Django
	mu     sync.Mutex
	reqs   []DjangoRequest
	status func(n int) int // forced answer for the n-th request (0-based); 0 = normal
	notify chan struct{}
}

// NewDjango starts a test Django whose PREFECT_NOTIFICATIONS_WEBHOOK_KEY is
// key. It is closed when the test ends.
func NewDjango(tb testing.TB, key string) *Django {
	tb.Helper()
	d := newDjango(&key)
	tb.Cleanup(d.Server.Close)
	return d
}

// NewDjangoNoKey starts a test Django with the key variable unset: like the
// real one, it then accepts requests that carry no X-Notification-Key.
func NewDjangoNoKey(tb testing.TB) *Django {
	tb.Helper()
	d := newDjango(nil)
	tb.Cleanup(d.Server.Close)
	return d
}

func newDjango(key *string) *Django {
	d := &Django{key: key, notify: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/webhooks/v1/notification/", d.handle)
	// Django's APPEND_SLASH: a POST without the slash gets a 301 and the body
	// is lost. Recorded so a test can see the relay got the path wrong.
	mux.HandleFunc("/webhooks/v1/notification", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d.record(DjangoRequest{Header: r.Header.Clone(), Body: body, Status: http.StatusMovedPermanently})
		http.Redirect(w, r, "/webhooks/v1/notification/", http.StatusMovedPermanently)
	})
	d.Server = httptest.NewServer(mux)
	d.URL = d.Server.URL + "/webhooks/v1/notification/"
	return d
}

// RespondWith makes the n-th request (0-based, counting every request)
// answer status f(n) instead of Django's normal answer when f returns
// non-zero; use it to simulate 5xx, 429 or 401. Requests forced this way are
// recorded with Accepted=false.
func (d *Django) RespondWith(f func(n int) int) {
	d.mu.Lock()
	d.status = f
	d.mu.Unlock()
}

func (d *Django) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := DjangoRequest{Header: r.Header.Clone(), Body: body}
	d.mu.Lock()
	n := len(d.reqs)
	force := d.status
	d.mu.Unlock()
	if r.Method != http.MethodPost {
		rec.Status = http.StatusMethodNotAllowed
		d.answer(w, rec, map[string]any{"detail": "Method not allowed"})
		return
	}
	if force != nil {
		if st := force(n); st != 0 {
			rec.Status = st
			d.answer(w, rec, map[string]any{"detail": "forced by test"})
			return
		}
	}
	// if request.headers.get("X-Notification-Key") != os.getenv("PREFECT_NOTIFICATIONS_WEBHOOK_KEY"):
	//     raise HttpError(400, "unauthorized")
	got, present := headerValue(r.Header, "X-Notification-Key")
	if !(present == (d.key != nil) && (!present || got == *d.key)) {
		rec.Status = http.StatusBadRequest
		d.answer(w, rec, map[string]any{"detail": "unauthorized"})
		return
	}
	// notification = json.loads(request.body); message = notification["body"]
	var notification map[string]any
	if err := json.Unmarshal(body, &notification); err != nil {
		rec.Status = http.StatusInternalServerError
		d.answer(w, rec, map[string]any{"detail": "invalid JSON"})
		return
	}
	raw, ok := notification["body"]
	if !ok {
		rec.Status = http.StatusInternalServerError
		d.answer(w, rec, map[string]any{"detail": "'body'"})
		return
	}
	message, isString := raw.(string)
	if !isString {
		// json.loads(<dict>) raises TypeError, which Django does not catch.
		rec.Status = http.StatusInternalServerError
		d.answer(w, rec, map[string]any{"detail": "the JSON object must be str, bytes or bytearray"})
		return
	}
	var obj map[string]any
	if json.Unmarshal([]byte(message), &obj) == nil && obj != nil {
		// A flow-run JSON: only the id is used; the state stays "unknown".
		if id, _ := obj["id"].(string); id != "" && stateDetailsFlowRunID(obj) == id {
			rec.FlowRunID, rec.State = id, "unknown"
		}
	} else if m := djangoMessage.FindStringSubmatch(message); m != nil {
		rec.FlowRunID, rec.State = m[2], m[3]
	}
	rec.Status = http.StatusOK
	rec.Accepted = rec.FlowRunID != ""
	d.answer(w, rec, map[string]any{"status": "ok"})
}

// headerValue is request.headers.get: Django's headers are case-insensitive.
func headerValue(h http.Header, k string) (string, bool) {
	v, ok := h[http.CanonicalHeaderKey(k)]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func stateDetailsFlowRunID(obj map[string]any) string {
	st, _ := obj["state"].(map[string]any)
	sd, _ := st["state_details"].(map[string]any)
	id, _ := sd["flow_run_id"].(string)
	return id
}

func (d *Django) answer(w http.ResponseWriter, rec DjangoRequest, body any) {
	d.record(rec)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rec.Status)
	_ = json.NewEncoder(w).Encode(body)
}

func (d *Django) record(rec DjangoRequest) {
	rec.At = time.Now()
	d.mu.Lock()
	d.reqs = append(d.reqs, rec)
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// Requests returns every request received so far, in arrival order.
func (d *Django) Requests() []DjangoRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]DjangoRequest(nil), d.reqs...)
}

// Accepted returns the notifications Django would have acted on.
func (d *Django) Accepted() []DjangoRequest {
	var out []DjangoRequest
	for _, r := range d.Requests() {
		if r.Accepted {
			out = append(out, r)
		}
	}
	return out
}

// StatesOf returns the state names Django accepted for one flow run, in order.
func (d *Django) StatesOf(flowRunID string) []string {
	var out []string
	for _, r := range d.Accepted() {
		if r.FlowRunID == flowRunID {
			out = append(out, r.State)
		}
	}
	return out
}

// WaitFor waits up to timeout until cond holds over the received requests,
// re-checking on every new request. It reports whether cond held.
func (d *Django) WaitFor(timeout time.Duration, cond func(reqs []DjangoRequest) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(d.Requests()) {
			return true
		}
		select {
		case <-d.notify:
		case <-tick.C:
		case <-deadline.C:
			return cond(d.Requests())
		}
	}
}

// WaitForState waits until Django accepted state for flowRunID.
func (d *Django) WaitForState(timeout time.Duration, flowRunID, state string) bool {
	return d.WaitFor(timeout, func([]DjangoRequest) bool {
		for _, s := range d.StatesOf(flowRunID) {
			if s == state {
				return true
			}
		}
		return false
	})
}
