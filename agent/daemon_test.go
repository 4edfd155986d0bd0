package agent

import (
	"context"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// TestDaemonConvergesThroughFaults: with the server failing, cutting and stalling in turn,
// the daemon keeps going and ends with the released set installed, never a corrupt one.
func TestDaemonConvergesThroughFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("bounded soak; skipped with -short")
	}
	e := newEnv(t, testserver.Options{})
	t.Setenv("OTA_AGENT_SERVER_STALL_TIMEOUT", "300ms") // a stalled body ends quickly
	cfg := e.config("poll:\n  interval: 1s\n  jitter: 0s\n" + metadataMode(e))
	want := e.release("scoreboard", "prod", "8.0.0", make([]byte, 300000), 90)
	faults := []testserver.Faults{
		{FailStatus: 503, FailFraction: 0.5, RetryAfter: "0"},
		{CloseAfter: 50000, PathPrefix: "/firmware/"},
		{FailStatus: 429, FailCount: 3},
		{StallAfter: 100000, PathPrefix: "/firmware/"},
		{FailStatus: 500, FailCount: 2, HTMLErrors: true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	checks, failures := 0, 0
	var broken error // a state that does not verify, seen by the daemon's goroutine
	done := make(chan error, 1)
	go func() {
		done <- RunDaemon(ctx, DaemonOptions{
			BackoffBase: 50 * time.Millisecond,
			Load:        func() (*Agent, error) { return e.agent(cfg), nil },
			Checked: func(err error) {
				checks++
				if err != nil {
					failures++
				}
				e.srv.SetFaults(testserver.Faults{})
				if checks < 3*len(faults) {
					e.srv.SetFaults(faults[checks%len(faults)])
				}
				if err == nil && checks >= 3*len(faults) {
					s, verr := checkState(e.agent(cfg)) // no t.Fatal off the test's goroutine
					if verr != nil {
						broken = verr
						cancel()
					} else if s.Apps["scoreboard"].MD5 == want.MD5 {
						cancel()
					}
				}
			},
		})
	}()
	e.srv.SetFaults(faults[0])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if broken != nil {
		t.Fatalf("after check %d the state did not verify: %v", checks, broken)
	}
	s := verifyState(t, e.agent(cfg))
	if s.Apps["scoreboard"].MD5 != want.MD5 {
		t.Fatalf("did not converge in %d checks (%d failed): %+v", checks, failures, s.Apps["scoreboard"])
	}
	if failures == 0 {
		t.Fatal("no check failed: the faults were not exercised")
	}
	t.Logf("converged after %d checks, %d failed", checks, failures)
}
