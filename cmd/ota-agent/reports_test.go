package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reportKinds is the receiver's view: each event's id → kind, and the duplicates it dropped.
func (w *world) reportKinds() (map[string]string, int64) {
	w.t.Helper()
	v := w.srv.Reports().Snapshot()
	out := map[string]string{}
	for _, s := range v.Events {
		var e struct{ ID, Kind string }
		json.Unmarshal(s.Event, &e)
		if _, dup := out[e.ID]; dup {
			w.t.Fatalf("the receiver holds %s twice", e.ID)
		}
		out[e.ID] = e.Kind
	}
	return out, v.Dupes
}

// installedEvents counts the installed events the receiver holds.
func installedEvents(kinds map[string]string) int {
	n := 0
	for id, k := range kinds {
		if k == "installed" && strings.Contains(id, "/installed/g") {
			n++
		}
	}
	return n
}

// Device reports end to end: every install reaches the receiver exactly once although the
// agent is killed while recording the event (inside its transaction), after the receiver
// took a batch but before the outbox knew, and by SIGKILL while the receiver drips its
// answer; a receiver that fails leaves the update unaffected; the fleet view counts it all.
func TestDeviceReports(t *testing.T) {
	w := newWorld(t, 64<<10, "")
	w.writeConfig(fmt.Sprintf("device:\n  cpu_arch: armv8\n  attributes: {gamer: prod}\n  id: gw-report\nreport:\n  url: %s/reports\n", w.base))
	w.mustAgent("check", "--once")
	if kinds, _ := w.reportKinds(); installedEvents(kinds) != 1 || kinds["gw-report/installed/g1"] != "installed" {
		t.Fatalf("after the first install the receiver holds %v", kinds)
	}

	serial := int64(60)
	next := func(version string) {
		serial++
		w.release("scoreboard", version, randomBytes(64<<10, byte(serial)), serial)
	}
	for i, crash := range []string{"report-recorded", "report-posted"} {
		next(fmt.Sprintf("1.%d.0", i+1))
		if r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=" + crash}, "check", "--once"); r.code != 99 {
			t.Fatalf("%s: exit %d, want the crash hook's 99\n%s", crash, r.code, r.stderr)
		}
		w.mustAgent("check", "--once")
		if kinds, _ := w.reportKinds(); installedEvents(kinds) != 2+i {
			t.Fatalf("after a cut at %s the receiver holds %v", crash, kinds)
		}
	}
	if _, dupes := w.reportKinds(); dupes < 1 {
		t.Fatal("the batch posted again after report-posted was not dropped as a duplicate")
	}

	// SIGKILL while the receiver drips its answer (it has taken the events already).
	next("1.3.0")
	w.srv.Reports().SetFault(0, 50*time.Millisecond)
	cmd := exec.Command(bin, "--config", w.cfg, "check", "--once")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for kinds, _ := w.reportKinds(); installedEvents(kinds) < 4; kinds, _ = w.reportKinds() {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the install's event never reached the receiver: %v", kinds)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	w.srv.Reports().SetFault(0, 0)
	w.mustAgent("check", "--once")
	if kinds, _ := w.reportKinds(); installedEvents(kinds) != 4 {
		t.Fatalf("after SIGKILL while posting the receiver holds %v", kinds)
	}

	// A receiver answering 500 leaves the update alone; its events wait in the outbox.
	w.srv.Reports().SetFault(500, 0)
	next("1.4.0")
	r := w.mustAgent("check", "--once")
	if !strings.Contains(r.stderr, "device reports: not posted; kept for later") {
		t.Fatalf("no word of the failed post:\n%s", r.stderr)
	}
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "1.4.0") {
		t.Fatalf("the update did not happen with the receiver down:\n%s", st.stdout)
	}
	w.srv.Reports().SetFault(0, 0)

	out, err := otaRelease(t, "fleet", "--url", w.base+"/reports", "--json")
	if err != nil {
		t.Fatalf("ota-release fleet: %v\n%s", err, out)
	}
	var f struct {
		Releases []struct {
			App, Version string
			Offered      int `json:"offered"`
			Installed    int `json:"installed"`
		} `json:"releases"`
		Devices int `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("fleet --json: %v\n%s", err, out)
	}
	running := map[string]int{}
	for _, r := range f.Releases {
		running[r.App+" "+r.Version] = r.Installed
	}
	if f.Devices != 1 || running["scoreboard 1.3.0"] != 1 || running["scoreboard 1.0.0"] != 0 {
		t.Fatalf("fleet view (before the receiver came back): %s", out)
	}
	text, _ := otaRelease(t, "fleet", "--url", w.base+"/reports")
	if !strings.Contains(text, "RELEASE") || !strings.Contains(text, "scoreboard 1.3.0") {
		t.Fatalf("fleet text:\n%s", text)
	}
}
