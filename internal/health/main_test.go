package health

import (
	"os"
	"testing"

	"github.com/ota-agent/ota-agent/internal/leakcheck"
)

// The tests leave no goroutine of this module running.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
