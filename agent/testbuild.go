//go:build otatest

package agent

import (
	"os"
	"time"
)

// Built with -tags otatest (the binary the tests run): OTA_AGENT_TEST_CRASH_AFTER names a
// state of the update machine (the process exits 99 once that state is persisted, before its
// handler runs), a step inside a rollback (rollback-pending, rollback-switched) or
// patch-applying (a downloaded patch about to be applied); and plain http to loopback (the
// test server) is followed like https. A release build has neither (testbuild_release.go).
// OTA_AGENT_TEST_NOW sets the agent's clock.

// testBuild: this build follows plain http to loopback (the test server).
const testBuild = true

func (a *Agent) testHooks() {
	if now := os.Getenv("OTA_AGENT_TEST_NOW"); now != "" { // an injected clock (RFC 3339), running from there
		if t, err := time.Parse(time.RFC3339, now); err == nil {
			start := time.Now()
			a.Now = func() time.Time { return t.Add(time.Since(start)) }
		}
	}
	if hook := os.Getenv("OTA_AGENT_TEST_CRASH_AFTER"); hook != "" {
		a.Hook = func(step string) {
			if step == hook {
				a.Log.Warn("test hook: exiting after step", "step", step)
				os.Exit(99)
			}
		}
	}
}
