// Package logging builds the logrus logger both processes use.
package logging

import (
	"io"

	"github.com/sirupsen/logrus"
)

// TimestampFormat is the JSON log's "time" layout (milliseconds, zone).
const TimestampFormat = "2006-01-02T15:04:05.000Z07:00"

// New returns a logger writing to w at level ("info", ...) in format ("json" or "text").
func New(w io.Writer, level, format string) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(w)
	if lv, err := logrus.ParseLevel(level); err == nil {
		l.SetLevel(lv)
	}
	if format == "text" {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	} else {
		l.SetFormatter(newFastJSON(TimestampFormat))
	}
	return l
}
