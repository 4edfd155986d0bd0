package main

import (
	"strings"
	"testing"
)

// Under net.max_rate a transfer waits for the cap between reads, longer than the stall
// timer at times: it must not count as stalled. (The rate itself is measured by make bench;
// the limiter's arithmetic is tested on an injected clock in internal/transport.)
func TestCapDoesNotStall(t *testing.T) {
	w := newWorld(t, 4096, "#metadata\nnet:\n  max_rate: 16KiB/s\n")
	w.release("scoreboard", "8.0.0", randomBytes(40000, 21), 80)
	r := w.agent([]string{"OTA_AGENT_SERVER_STALL_TIMEOUT=1s"}, "check", "--once")
	if r.code != 0 || strings.Contains(r.stderr, "stalled") {
		t.Fatalf("the cap counted as a stall (exit %d):\n%s", r.code, r.stderr)
	}
	w.converges()
	// A bad schedule names itself.
	w.writeConfig("net:\n  schedule: [\"22:00 0\"]\n")
	if r := w.agent(nil, "check", "--once"); r.code != 2 || !strings.Contains(r.stderr, `net.schedule`) || !strings.Contains(r.stderr, `"22:00 0"`) {
		t.Fatalf("bad schedule: exit %d\n%s", r.code, r.stderr)
	}
}
