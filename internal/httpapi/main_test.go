package httpapi

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestMain stops the Prefect server testenv may start for the live tests,
// then checks, after a run of the whole package with a real Prefect (as make
// test runs it), that every operation of /openapi.json was seen by some test
// to answer as documented, both a success and an error (specChecked
// validates each answer).
func TestMain(m *testing.M) {
	code := testenv.Main(m)
	if code != 0 || flag.Lookup("test.run").Value.String() != "" || testing.Short() ||
		os.Getenv(testenv.EnvPrefectURL) == "" {
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
