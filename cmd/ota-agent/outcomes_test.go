package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// `verify` that finds a changed binary records it (as the daemon's re-verification does):
// status names it damaged and the next check fetches it again, instead of a 304.
func TestVerifyRecordsDamage(t *testing.T) {
	w := newWorld(t, 4096, "")
	w.mustAgent("check", "--once")
	path := filepath.Join(w.state, "current", "scoreboard")
	raw, _ := os.ReadFile(path)
	raw[0] ^= 0xff
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r := w.agent(nil, "verify")
	if r.code != 1 || !strings.Contains(r.stderr, "recorded: the next check fetches scoreboard again") {
		t.Fatalf("verify of a changed binary: exit %d\n%s", r.code, r.stderr)
	}
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "damaged: scoreboard") {
		t.Fatalf("status:\n%s", st.stdout)
	}
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "scoreboard       1.0.0      installed") {
		t.Fatalf("the check after verify:\n%s", r.stdout)
	}
	w.mustAgent("verify")
}

// Configuration a new user gets wrong: --root without a configuration names the file it
// looked for; status and verify need no server.url; a FIFO as the configuration is refused
// at once; numbers too large say so; an unknown OTA_AGENT_* variable is warned about.
func TestConfigNewUser(t *testing.T) {
	w := newWorld(t, 4096, "")
	root := t.TempDir()
	r := w.run(nil, "--root", root, "check", "--once")
	if want := filepath.Join(root, "etc/ota-agent/config.yaml"); r.code != 2 || !strings.Contains(r.stderr, "looked for "+want) {
		t.Fatalf("--root without a configuration: exit %d\n%s", r.code, r.stderr)
	}
	if r := w.run(nil, "--root", root, "status"); r.code != 0 || !strings.Contains(r.stdout, "nothing installed yet") {
		t.Fatalf("status without server.url: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	w.mustAgent("check", "--once")
	noURL := filepath.Join(w.dir, "nourl.yaml")
	os.WriteFile(noURL, []byte("state_dir: "+w.state+"\n"), 0o644)
	for _, cmd := range []string{"status", "verify"} {
		if r := w.run(nil, "--config", noURL, cmd); r.code != 0 {
			t.Fatalf("%s without server.url: exit %d\n%s", cmd, r.code, r.stderr)
		}
	}
	fifo := filepath.Join(w.dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := w.run(nil, "--config", fifo, "status"); r.code != 2 || !strings.Contains(r.stderr, "not a regular file") {
		t.Fatalf("a FIFO as configuration: exit %d\n%s", r.code, r.stderr)
	}
	for _, c := range []struct{ env, want string }{
		{"OTA_AGENT_HOOKS_MAX_TRIALS=99999999999999999999", "hooks.max_trials in the environment (OTA_AGENT_HOOKS_MAX_TRIALS): 99999999999999999999 is too large"},
		{"OTA_AGENT_NET_MAX_RATE=99999999999GiB", `net.max_rate in the environment (OTA_AGENT_NET_MAX_RATE): "99999999999GiB" is too large`},
		{"OTA_AGENT_POLL_INTERVAL=9999999999h", `"9999999999h" is too large`},
	} {
		if r := w.agent([]string{c.env}, "status"); r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d, want %q\n%s", c.env, r.code, c.want, r.stderr)
		}
	}
	if r := w.agent([]string{"OTA_AGENT_SERVER_UR=https://typo"}, "status"); r.code != 0 || !strings.Contains(r.stderr, "OTA_AGENT_SERVER_UR names no configuration key") {
		t.Fatalf("an unknown variable: exit %d\n%s", r.code, r.stderr)
	}
}

// A check that only writes a new OS image says so (which partition, tried at the next boot),
// not that a slot was switched.
func TestOSOnlyUpdateSays(t *testing.T) {
	w, _, _, _ := osWorld(t)
	w.mustAgent("check", "--once")
	os.WriteFile(filepath.Join(w.dir, "boot_id"), []byte("2"), 0o644) // rebooted into b
	w.mustAgent("mark-good")
	w.release("os_armv8", "1.2.0", randomBytes(8192, 77), 90)
	r := w.mustAgent("check", "--once")
	first := strings.SplitN(r.stdout, "\n", 2)[0]
	if !strings.HasPrefix(first, "updated: OS image written to partition slot a, tried at the next boot (") || strings.Contains(first, "switched") {
		t.Fatalf("an OS-only update says:\n%s", r.stdout)
	}
}

// Outside an install window the result says the release is staged and when it switches, not
// that it was switched.
func TestStagedSaysSo(t *testing.T) {
	day := time.Now().Add(72 * time.Hour).Format("Mon") // never today
	w := newWorld(t, 4096, "")
	w.mustAgent("check", "--once")
	w.writeConfig("install:\n  windows: [\"" + day + " 03:00-04:00\"]\n")
	w.release("scoreboard", "9.1.0", randomBytes(9000, 32), 99)
	r := w.mustAgent("check", "--once")
	if !strings.HasPrefix(r.stdout, "staged: installed into slot b, switches at "+day) || !strings.Contains(r.stdout, "ota-agent apply") || strings.Contains(r.stdout, "and switched") {
		t.Fatalf("a staged update says:\n%s", r.stdout)
	}
}

// JSON and text say only what happened: no empty delivery, no null lists, no error="" on a
// success line, one word (downloaded) for bytes received.
func TestOutputsHaveNoEmptyFields(t *testing.T) {
	w := newWorld(t, 4096, "log:\n  level: info\n")
	dry := w.mustAgent("check", "--once", "--dry-run", "--json")
	r := w.mustAgent("-v", "check", "--once", "--json")
	w.release("scoreboard", "3.3.0", randomBytes(4096, 33), 90)
	again := w.mustAgent("check", "--once", "--json")
	st := w.mustAgent("status", "--json")
	for _, out := range []string{dry.stdout, r.stdout, again.stdout, st.stdout} {
		for _, bad := range []string{`"delivery": ""`, `null`, `"fetched"`} {
			if strings.Contains(out, bad) {
				t.Fatalf("output holds %s:\n%s", bad, out)
			}
		}
	}
	if strings.Contains(r.stderr, `error=""`) || !strings.Contains(r.stderr, "msg=check result=updated") {
		t.Fatalf("the success line:\n%s", r.stderr)
	}
}
