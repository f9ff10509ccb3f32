package httpapi

import (
	"os"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// TestMain stops the Prefect server testenv may start for the live tests.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
