package logging

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// The fast formatter writes byte for byte what logrus's JSONFormatter writes.
func TestFastJSONMatchesLogrus(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 21, 30, 0, 123456789, time.FixedZone("x", 5*3600+1800))
	cases := []struct {
		name   string
		level  logrus.Level
		msg    string
		fields logrus.Fields
	}{
		{"an access-log line", logrus.InfoLevel, "request", logrus.Fields{
			"request_id": "5f3c9a0e1d2b4c6a", "method": "GET", "route": "/proxy/flow_runs/:flow_run_id/poll",
			"status": 200, "latency_ms": 0.091, "org": "dalgo-org"}},
		{"a warning with an error and a job id", logrus.WarnLevel, "request", logrus.Fields{
			"status": 404, "latency_ms": 12.0, "error": errors.New(`prefect: 404 "not found"`), "job_id": "j-1"}},
		{"text needing escapes: quotes, HTML, control bytes, unicode, invalid UTF-8", logrus.ErrorLevel, "a <b> & \"c\"\n",
			logrus.Fields{"org": "ünïcode\u2028 \x01 \xff", "x": "tab\there"}},
		{"floats as encoding/json writes them", logrus.InfoLevel, "f", logrus.Fields{
			"tiny": 1e-7, "huge": 1e21, "zero": 0.0, "neg": -2.5, "int64": int64(-7), "ok": true, "nil": nil}},
		{"values it leaves to logrus", logrus.InfoLevel, "m", logrus.Fields{
			"nan": math.NaN(), "list": []string{"a"}, "map": map[string]int{"b": 1}}},
		{"fields clashing with logrus's keys", logrus.InfoLevel, "m", logrus.Fields{"msg": "mine", "level": 3, "time": "t"}},
		{"no fields", logrus.DebugLevel, "", logrus.Fields{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			entry := func() *logrus.Entry {
				e := logrus.NewEntry(logrus.New()).WithFields(tc.fields)
				e.Time, e.Level, e.Message = at, tc.level, tc.msg
				e.Buffer = &bytes.Buffer{}
				return e
			}
			want, werr := (&logrus.JSONFormatter{TimestampFormat: TimestampFormat}).Format(entry())
			got, gerr := newFastJSON(TimestampFormat).Format(entry())
			if string(got) != string(want) || (gerr == nil) != (werr == nil) {
				t.Fatalf("got  %s (%v)\nwant %s (%v)", got, gerr, want, werr)
			}
		})
	}
}
