package httpapi

import (
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// specLiveRan is set by TestLiveWritesAnswerAsDocumented when it finished:
// without it the writes' success answers were not exercised.
var specLiveRan atomic.Bool

// TestMain stops the Prefect server testenv may start for the live tests and
// checks every exchange the tests recorded through specChecked
// against /openapi.json once they have all ended. After a run of the whole
// package that included the live writes (as make test runs it), it also
// checks that every operation of the document was seen to answer as
// documented, both a success and an error.
func TestMain(m *testing.M) {
	// Load the document before the tests start, not in the middle of them.
	if _, err := loadSpec(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := testenv.Main(m)
	if fails := specLog.check(); len(fails) > 0 {
		for _, f := range fails {
			fmt.Fprintln(os.Stderr, "--- FAIL (openapi.json):", f)
		}
		fmt.Fprintf(os.Stderr, "FAIL: %d answers or requests differ from openapi.json\n", len(fails))
		code = 1
	}
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
