package main

import (
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, "relay-setup", main) }

func TestExitStatus(t *testing.T) {
	t.Parallel()
	clitest.ExitStatus(t, "relay-setup")
}
