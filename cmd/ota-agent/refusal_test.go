package main

import (
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
)

// `rollback` of the first generation is refused (exit 1, it says why and how); with --force
// it leaves nothing installed. A rollback by hand refuses what it left: the next check does
// not install it again and says it is refused, until `retry APP`.
func TestRollbackByHand(t *testing.T) {
	w := newWorld(t, 4096, "")
	w.mustAgent("check", "--once")
	r := w.agent(nil, "rollback")
	if r.code != 1 || !strings.Contains(r.stderr, "first generation") || !strings.Contains(r.stderr, "--force") || w.wholeSlot() != "slots/a" {
		t.Fatalf("rollback of the first generation: exit %d, slot %s\n%s", r.code, w.wholeSlot(), r.stderr)
	}
	w.release("scoreboard", "2.5.0", randomBytes(4096, 25), 50)
	w.mustAgent("check", "--once")
	if r := w.mustAgent("rollback"); !strings.Contains(r.stdout, "rolled back: slot a") {
		t.Fatalf("rollback: %s", r.stdout)
	}
	r = w.mustAgent("check", "--once")
	if !strings.Contains(r.stdout, "up-to-date") || !strings.Contains(r.stdout, "refused: scoreboard 2.5.0") || !strings.Contains(r.stdout, "ota-agent retry scoreboard") || w.wholeSlot() != "slots/a" {
		t.Fatalf("the check after a rollback by hand:\n%s", r.stdout)
	}
	if r := w.mustAgent("retry", "scoreboard"); !strings.Contains(r.stdout, "scoreboard 2.5.0") {
		t.Fatalf("retry: %s", r.stdout)
	}
	if r := w.agent(nil, "retry", "scoreboard"); r.code != 1 || !strings.Contains(r.stderr, "nothing of scoreboard is refused") {
		t.Fatalf("retry with nothing refused: exit %d %s", r.code, r.stderr)
	}
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "scoreboard       2.5.0") || w.wholeSlot() != "slots/b" {
		t.Fatalf("after retry:\n%s", r.stdout)
	}
	w.mustAgent("verify")
	// The first generation by force: nothing is installed, the releases are refused.
	fresh := newWorld(t, 4096, "")
	fresh.mustAgent("check", "--once")
	if r := fresh.mustAgent("rollback", "--force"); !strings.Contains(r.stdout, "nothing is installed now") {
		t.Fatalf("rollback --force: %s", r.stdout)
	}
	if r := fresh.mustAgent("status"); !strings.Contains(r.stdout, "nothing installed yet") || !strings.Contains(r.stdout, "refused: scoreboard 1.0.0") {
		t.Fatalf("status after rollback --force:\n%s", r.stdout)
	}
}

// Corrupted downloads (a different byte each time) never burn a good release, whatever
// install.max_attempts; the next clean transfer installs it. (TestRetryBudget: the same
// wrong bytes each time do.)
func TestDamagedTransfersDoNotRefuse(t *testing.T) {
	w := newWorld(t, 4096, "#metadata\ninstall:\n  max_attempts: 2\n")
	w.mustAgent("check", "--once")
	w.release("scoreboard", "7.5.0", randomBytes(20000, 14), 75)
	for i := int64(0); i < 4; i++ {
		w.srv.SetFaults(testserver.Faults{Flip: true, FlipAt: 4000 + 1000*i, PathPrefix: "/firmware/"})
		r := w.agent(nil, "check", "--once")
		if r.code != 4 || strings.Contains(r.stderr, "gave up") || !strings.Contains(r.stderr, "not counted toward install.max_attempts") {
			t.Fatalf("damaged transfer %d: exit %d\n%s", i, r.code, r.stderr)
		}
	}
	w.srv.SetFaults(testserver.Faults{})
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "scoreboard       7.5.0      installed") {
		t.Fatalf("the clean transfer:\n%s", r.stdout)
	}
	if st := w.mustAgent("status"); strings.Contains(st.stdout, "refused") {
		t.Fatalf("status:\n%s", st.stdout)
	}
}
