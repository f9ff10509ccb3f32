package obs

import (
	"os"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
