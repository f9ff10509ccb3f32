package httpapi

import (
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// specLiveRan is set by TestLiveWritesAnswerAsDocumented when it finished:
// without it the writes' success answers were not exercised.
var specLiveRan atomic.Bool

// TestMain checks, after a run of the whole package that included the live
// writes (as make test runs it), that every operation of /openapi.json was
// seen by some test to answer as documented, both a success and an error
// (specChecked validates each answer).
func TestMain(m *testing.M) {
	code := m.Run()
	if code != 0 || flag.Lookup("test.run").Value.String() != "" || !specLiveRan.Load() {
		os.Exit(code)
	}
	noSuccess, noError, err := specSeen.unchecked()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(noSuccess)+len(noError) > 0 {
		fmt.Fprintf(os.Stderr, "openapi.json: no test checked a success answer of %v, nor an error answer of %v\n", noSuccess, noError)
		os.Exit(1)
	}
	os.Exit(code)
}
