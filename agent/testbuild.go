//go:build otatest

package agent

import (
	"os"

	"github.com/ota-agent/ota-agent/internal/transport"
)

// Built with -tags otatest (the binary the tests run): crash points a test names in
// OTA_AGENT_TEST_CRASH_AFTER exit the process after that step, and plain http to loopback
// (the test server) is followed like https. A release build has neither (testbuild_release.go).

func init() { transport.LoopbackHTTP = true }

func (a *Agent) testHooks() {
	if hook := os.Getenv("OTA_AGENT_TEST_CRASH_AFTER"); hook != "" {
		a.hook = func(step string) {
			if step == hook {
				a.log.Warn("test hook: exiting after step", "step", step)
				os.Exit(99)
			}
		}
	}
}
