package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/testserver"
)

// The update machine's states each crash test stops the process in (as the state is
// persisted, before its handler runs): together, every state of agent.States() but Idle.
var (
	installStates  = []agent.State{agent.Ask, agent.Receive, agent.Verify, agent.Compose, agent.Seal, agent.Park, agent.AwaitWindow, agent.Switch, agent.Record, agent.Commit}
	rollbackStates = []agent.State{agent.Trial, agent.RollBack}
	osStates       = []agent.State{agent.WriteOS, agent.SetEnv, agent.Reboot, agent.OSTrial, agent.OSCommit}
	restartStates  = []agent.State{agent.RestartUnits}
)

// The crash tests walk the whole table.
func TestCrashTestsCoverEveryState(t *testing.T) {
	covered := map[agent.State]bool{agent.Idle: true}
	for _, l := range [][]agent.State{installStates, rollbackStates, osStates, restartStates} {
		for _, s := range l {
			covered[s] = true
		}
	}
	for _, s := range agent.States() {
		if !covered[s] {
			t.Errorf("no crash test stops in state %s", s)
		}
	}
}

// TestCrashChains stops the process in each state of an install, then restarts it: the slot
// set is whole at every stop, and after the restart the new release is installed and verify
// passes. Full payload and metadata mode.
func TestCrashChains(t *testing.T) {
	for _, mode := range []string{"", "#metadata\n"} {
		for _, state := range installStates {
			step := string(state)
			t.Run(strings.TrimSpace(strings.TrimPrefix(mode, "#"))+"/"+step, func(t *testing.T) {
				w := newWorld(t, 8192, mode)
				w.mustAgent("check", "--once")
				w.release("scoreboard", "1.5.0", randomBytes(50000, 3), 40)
				r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=" + step}, "check", "--once")
				if r.code != 99 {
					t.Fatalf("crash hook at %s: exit %d\n%s", step, r.code, r.stderr)
				}
				slot := w.wholeSlot()
				switchedAlready := state == agent.Record || state == agent.Commit
				if (slot == "slots/b") != switchedAlready {
					t.Fatalf("after a crash at %s the active slot is %s", step, slot)
				}
				fetched := w.srv.Stats().BytesByPath["/firmware"]
				r = w.mustAgent("check", "--once", "--json")
				if mode != "" && state != agent.Ask && state != agent.Receive && w.srv.Stats().BytesByPath["/firmware"] != fetched {
					t.Fatalf("after a crash at %s the restart downloaded the binary again", step)
				}
				w.mustAgent("verify")
				st := w.mustAgent("status")
				if !strings.Contains(st.stdout, "1.5.0") {
					t.Fatalf("after restart the release is not installed:\n%s\n%s", st.stdout, r.stdout)
				}
				if leftovers, _ := filepath.Glob(filepath.Join(w.state, "slots", "*.tmp")); len(leftovers) > 0 {
					t.Fatalf("staging left behind: %v", leftovers)
				}
			})
		}
	}
}

// TestKillMidDownload: SIGKILL while a throttled full payload streams in leaves the old slot
// whole and the database's account unchanged (only the machine's state, staging, was
// recorded); the next run says what it recovers from and installs.
func TestKillMidDownload(t *testing.T) {
	w := newWorld(t, 8192, "")
	w.mustAgent("check", "--once")
	before := w.mustAgent("status", "--json").stdout
	w.release("scoreboard", "2.5.0", randomBytes(400000, 9), 50)
	w.srv.SetFaults(testserver.Faults{RateBPS: 150000, PathPrefix: "/package"})
	cmd := exec.Command(bin, "--config", w.cfg, "check", "--once")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the download to start", 10*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(w.state, "slots", "b.tmp", ".in-*"))
		return len(m) > 0
	})
	// status reads while the check is downloading: the check does not hold agent.db
	// between its transactions.
	if st := w.mustAgent("status", "--json").stdout; !strings.Contains(st, `"in_progress": "receive"`) {
		t.Fatalf("status during the download:\n%s", st)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if w.wholeSlot() != "slots/a" {
		t.Fatal("a killed download switched slots")
	}
	after := w.mustAgent("status", "--json").stdout
	var b, a map[string]any
	json.Unmarshal([]byte(before), &b)
	json.Unmarshal([]byte(after), &a)
	if a["in_progress"] != "receive" {
		t.Fatalf("status does not show the interrupted update:\n%s", after)
	}
	delete(a, "in_progress")
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("a killed download changed the database's account:\n%s\nwas\n%s", after, before)
	}
	w.srv.SetFaults(testserver.Faults{})
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stderr, "interrupted at step receive") {
		t.Fatalf("the restart does not say what it recovers from:\n%s", r.stderr)
	}
	w.mustAgent("verify")
}

// TestSecondInstanceRefused: one process per state directory, with a clear message.
func TestSecondInstanceRefused(t *testing.T) {
	w := newWorld(t, 4096, "poll:\n  interval: 1h\n")
	cmd := exec.Command(bin, "--config", w.cfg, "run")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	waitFor(t, "the daemon's first install", 10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(w.state, "current", "scoreboard"))
		return err == nil
	})
	r := w.agent(nil, "check", "--once")
	if r.code == 0 || !strings.Contains(r.stderr, "locked by pid") {
		t.Fatalf("second instance: exit %d %s", r.code, r.stderr)
	}
	// status reads while the daemon runs.
	w.mustAgent("status")
}

// TestRollbackCrashChains: the process stops in the middle of a health-check rollback; the
// restart finishes it (old generation committed, never put on trial) and the release stays
// refused.
func TestRollbackCrashChains(t *testing.T) {
	steps := []string{"rollback-switch", "rollback-record"} // the switch and record of the rollback
	for _, s := range rollbackStates {
		steps = append(steps, string(s))
	}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t, 4096, "hooks:\n  health: \"! grep -q BAD $OTA_SLOT_DIR/scoreboard\"\n")
			w.mustAgent("check", "--once")
			w.release("scoreboard", "6.0.0", []byte("BAD six"), 90)
			if r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=" + step}, "check", "--once"); r.code != 99 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			w.wholeSlot()
			r := w.mustAgent("check", "--once")
			if !strings.Contains(r.stdout, "up-to-date") {
				t.Fatalf("after the restart the refused release came back:\n%s%s", r.stdout, r.stderr)
			}
			if w.wholeSlot() != "slots/a" {
				t.Fatal("not back on slot a")
			}
			w.mustAgent("verify")
			st := w.mustAgent("status")
			if !strings.Contains(st.stdout, "committed") || strings.Contains(st.stdout, "  on trial:") || !strings.Contains(st.stdout, "refused: scoreboard 6.0.0 (md5") {
				t.Fatalf("status:\n%s", st.stdout)
			}
		})
	}
}

// TestPowerCutLeavesEmptyPartial: a power cut during a metadata-mode download can leave the
// partial file empty (created, its bytes never flushed) beside a saved resume record. grab
// then asks for "bytes=0-" and gets a 206, which must not fail every later check (found by
// the booted power-cut test: the device never converged).
func TestPowerCutLeavesEmptyPartial(t *testing.T) {
	w, cmd, partial := slowDownload(t, "2.6.0", 10, nil)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if err := os.Truncate(partial, 0); err != nil {
		t.Fatal(err)
	}
	w.srv.SetFaults(testserver.Faults{})
	w.mustAgent("check", "--once")
	w.mustAgent("verify")
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "2.6.0") {
		t.Fatalf("not installed after an emptied partial:\n%s", st.stdout)
	}
}

// TestDamagedDatabaseHeals: what a power cut leaves of agent.db (zeros; random bytes over the
// freelist page, which made bolt.Open panic) is moved aside and rebuilt from the slot
// manifests by the next check, logged at ERROR; the active slot is untouched and converges.
func TestDamagedDatabaseHeals(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(raw []byte)
	}{
		{"zero-filled", func(raw []byte) { clear(raw) }},
		{"random freelist page", func(raw []byte) {
			// The freelist's page id is in the newer of the two meta pages (page header 16
			// bytes, then magic, version, page size, flags, root bucket 16, freelist pgid).
			meta := func(off int) (txid, freelist uint64) {
				return binary.LittleEndian.Uint64(raw[off+64:]), binary.LittleEndian.Uint64(raw[off+48:])
			}
			tx0, fl := meta(0)
			if tx1, fl1 := meta(4096); tx1 > tx0 {
				fl = fl1
			}
			off := int(fl) * 4096
			copy(raw[off:min(len(raw), off+4096)], randomBytes(4096, 3))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 4096, "")
			w.mustAgent("check", "--once")
			db := filepath.Join(w.state, "agent.db")
			raw, _ := os.ReadFile(db)
			c.damage(raw)
			os.WriteFile(db, raw, 0o600)
			slot := w.wholeSlot()
			r := w.mustAgent("check", "--once")
			if !strings.Contains(r.stderr, "level=ERROR") || !strings.Contains(r.stderr, "database was damaged") {
				t.Errorf("no ERROR about the damaged database:\n%s", r.stderr)
			}
			if w.wholeSlot() != slot {
				t.Fatal("the active slot changed")
			}
			w.mustAgent("verify")
			if st := w.mustAgent("status"); !strings.Contains(st.stdout, "committed") {
				t.Fatalf("state not rebuilt from the manifests:\n%s", st.stdout)
			}
			if m, _ := filepath.Glob(db + ".corrupt-*"); len(m) != 1 {
				t.Fatalf("damaged database not kept aside: %v", m)
			}
			if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout+r.stderr, "up-to-date") {
				t.Fatalf("the next check does not converge:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}

// TestSigtermMidDownloadSaysInterrupted: a check stopped by SIGTERM in the middle of a
// download says it was interrupted and exits 1, instead of blaming the network (exit 3).
func TestSigtermMidDownloadSaysInterrupted(t *testing.T) {
	var stderr strings.Builder
	w, cmd, _ := slowDownload(t, "2.7.0", 11, &stderr)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "interrupted by a signal") || strings.Contains(stderr.String(), "unavailable") {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	// The bytes received before the signal are counted, not reported as 0.
	m := regexp.MustCompile(`msg=check result=failed .*bytes=(\d+)`).FindStringSubmatch(stderr.String())
	if m == nil || m[1] == "0" {
		t.Fatalf("the check's log line does not count the bytes received:\n%s", stderr.String())
	}
	w.srv.SetFaults(testserver.Faults{})
	w.mustAgent("check", "--once")
	w.mustAgent("verify")
}

// slowDownload installs the sample in metadata mode, releases scoreboard version and starts
// `check --once` on a slow firmware CDN; it returns once the partial download has bytes.
func slowDownload(t *testing.T, version string, seed byte, stderr *strings.Builder) (*world, *exec.Cmd, string) {
	w := newWorld(t, 8192, "#metadata\n")
	w.mustAgent("check", "--once")
	w.release("scoreboard", version, randomBytes(400000, seed), 50+int64(seed))
	w.srv.SetFaults(testserver.Faults{RateBPS: 100000, PathPrefix: "/firmware"})
	cmd := exec.Command(bin, "--config", w.cfg, "check", "--once")
	if stderr != nil {
		cmd.Stderr = stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(w.state, "downloads", "scoreboard_"+version)
	waitFor(t, "the download to start", 10*time.Second, func() bool {
		fi, err := os.Stat(partial)
		return err == nil && fi.Size() > 0
	})
	return w, cmd, partial
}

// TestRestartCrashChain: a crash before the units of a switched generation are restarted
// leaves the new slot active with the restart still recorded; the next start restarts them.
// The unit here exists nowhere (and no systemd may answer), so that restart fails in every
// environment: the generation is rolled back and refused, the old slot whole.
func TestRestartCrashChain(t *testing.T) {
	for _, s := range restartStates {
		t.Run(string(s), func(t *testing.T) {
			w := newWorld(t, 4096, "")
			w.mustAgent("check", "--once")
			w.writeConfig("apps:\n  scoreboard:\n    units: [ota-test-absent.service]\nhealth:\n  grace: 200ms\n")
			w.release("scoreboard", "6.1.0", randomBytes(3000, 12), 91)
			if r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=" + string(s)}, "check", "--once"); r.code != 99 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if slot := w.wholeSlot(); slot != "slots/b" {
				t.Fatalf("after a crash in %s the active slot is %s, want the new one", s, slot)
			}
			r := w.agent(nil, "check", "--once")
			if !strings.Contains(r.stderr, "ota-test-absent.service") && !strings.Contains(r.stderr, "cannot reach systemd") {
				t.Fatalf("the restart after the crash did not try the unit again:\n%s", r.stderr)
			}
			if w.wholeSlot() != "slots/a" {
				t.Fatal("not rolled back to slot a")
			}
			w.mustAgent("verify")
			if st := w.mustAgent("status"); !strings.Contains(st.stdout, "refused: scoreboard 6.1.0") {
				t.Fatalf("status:\n%s", st.stdout)
			}
			if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "up-to-date") {
				t.Fatalf("the refused release came back:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}

// A refusal lapses when another release of that app is committed, also when the commit
// comes from the next start (a crash during the trial); a refusal of an app the new
// generation did not change stays (its bad release may still be offered).
func TestRefusalLapsesAfterCrashInTrial(t *testing.T) {
	w := newWorld(t, 4096, "hooks:\n  health: \"! grep -q BAD $OTA_SLOT_DIR/scoreboard\"\n")
	w.mustAgent("check", "--once")
	w.release("scoreboard", "6.0.0", []byte("BAD six"), 90)
	w.agent(nil, "check", "--once")
	w.release("videoStreamer", "0.0.2", randomBytes(3000, 13), 91)
	if r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=trial"}, "check", "--once"); r.code != 99 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	w.mustAgent("check", "--once")
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "refused: scoreboard 6.0.0") || !strings.Contains(st.stdout, "0.0.2") {
		t.Fatalf("a generation that did not change scoreboard forgot its refusal:\n%s", st.stdout)
	}
	w.release("scoreboard", "7.0.0", randomBytes(3000, 14), 92)
	if r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=trial"}, "check", "--once"); r.code != 99 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	w.mustAgent("check", "--once")
	if st := w.mustAgent("status"); strings.Contains(st.stdout, "refused: scoreboard 6.0.0") || !strings.Contains(st.stdout, "7.0.0") {
		t.Fatalf("scoreboard 7.0.0 committed after a restart, 6.0.0 still refused:\n%s", st.stdout)
	}
}
