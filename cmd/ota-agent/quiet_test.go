package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/strace"
)

// TestQuietPollsSyncNothing: a check that finds nothing new, like the check agent.db last
// recorded, makes no fsync or fdatasync at all (strace); status still shows it (the record
// in runtime_dir), and the metrics count it. The first check that differs, or the first
// after an hour, is recorded in agent.db again, with the quiet checks counted.
func TestQuietPollsSyncNothing(t *testing.T) {
	st, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("SKIPPED: strace not installed (apt-get install strace)")
	}
	w := newWorld(t, 8192, "")
	prom := filepath.Join(w.dir, "textfile", "metrics.prom")
	os.MkdirAll(filepath.Dir(prom), 0o755)
	w.writeConfig("metrics:\n  textfile: " + prom + "\n")
	t0 := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) []string {
		return []string{"OTA_AGENT_TEST_NOW=" + t0.Add(d).Format(time.RFC3339)}
	}
	w.run(at(0), "--config", w.cfg, "check", "--once")           // installs
	w.run(at(time.Minute), "--config", w.cfg, "check", "--once") // up to date, after an update: recorded
	syncs := func(d time.Duration) int {
		t.Helper()
		trace := filepath.Join(t.TempDir(), "strace.log")
		cmd := exec.Command(st, "-f", "-y", "-qq", "-o", trace, "-e", "trace=fsync,fdatasync,sync,syncfs,sync_file_range", bin, "--config", w.cfg, "check", "--once")
		cmd.Env = append(os.Environ(), at(d)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("check under strace: %v\n%s", err, out)
		}
		events, err := strace.Parse(trace) // joins the calls strace split across threads
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range events {
			if strings.Contains(e.Call, "sync") && !strings.Contains(e.Path, "/textfile") { // metrics.textfile and its directory: for tmpfs
				n++
				t.Logf("%s %s", e.Call, e.Path)
			}
		}
		return n
	}
	for i, d := range []time.Duration{2 * time.Minute, 3 * time.Minute, 30 * time.Minute} {
		if n := syncs(d); n != 0 {
			r := w.run(at(d), "--config", w.cfg, "status", "--json")
			t.Fatalf("quiet check %d: %d sync calls, want none\n%s", i+1, n, r.stdout)
		}
	}
	status := func(d time.Duration) (last time.Time) {
		t.Helper()
		r := w.run(at(d), "--config", w.cfg, "status", "--json")
		var rep struct {
			LastCheck struct {
				Time   time.Time `json:"time"`
				Result string    `json:"result"`
			} `json:"last_check"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.LastCheck.Result != "up-to-date" {
			t.Fatalf("status: %v %s", err, r.stdout)
		}
		return rep.LastCheck.Time
	}
	if got := status(31 * time.Minute); got.Sub(t0) < 30*time.Minute {
		t.Errorf("status shows the check at %v, not the quiet one at +30m", got.Sub(t0))
	}
	if m, _ := os.ReadFile(prom); !strings.Contains(string(m), "ota_agent_checks_total 5\n") {
		t.Errorf("metrics do not count the quiet checks:\n%s", m)
	}
	// An hour after agent.db's record: recorded there again, every check counted.
	if n := syncs(62 * time.Minute); n == 0 {
		t.Error("the check an hour later was not recorded in agent.db")
	}
	if m, _ := os.ReadFile(prom); !strings.Contains(string(m), "ota_agent_checks_total 6\n") {
		t.Errorf("after agent.db took the record:\n%s", m)
	}
	os.RemoveAll(filepath.Join(w.dir, "state.run")) // a reboot empties tmpfs
	if got := status(63 * time.Minute); got.Sub(t0) < 62*time.Minute {
		t.Errorf("after a reboot status shows the check at %v, not agent.db's at +62m", got.Sub(t0))
	}
}

// TestDaemonQuietPollsSkipTheDatabase: while nothing changes, the daemon's poll is the last
// full check's request alone (agent/quietpoll.go): agent.db is not opened (strace), status
// shows each poll. A release published meanwhile is installed at the next poll (its 200
// sends the daemon through the full check), and a check asked for with SIGUSR1 is a full one.
func TestDaemonQuietPollsSkipTheDatabase(t *testing.T) {
	st, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("SKIPPED: strace not installed (apt-get install strace)")
	}
	w := newWorld(t, 4096, "poll:\n  interval: 1s\n  jitter: 0s\n  align: false\n")
	w.mustAgent("check", "--once") // installs
	w.mustAgent("check", "--once") // up to date: the record quiet checks follow
	trace := filepath.Join(t.TempDir(), "strace.log")
	cmd := exec.Command(st, "-f", "-y", "-qq", "-o", trace, "-e", "trace=openat", bin, "--config", w.cfg, "run")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	opens := func() int {
		raw, _ := os.ReadFile(trace)
		return strings.Count(string(raw), "agent.db\"")
	}
	polls := func() int64 { return w.srv.Stats().StatusCounts["304"] }
	p0 := polls()
	waitFor(t, "the first poll", 20*time.Second, func() bool { return polls() > p0 })
	first, p1 := opens(), polls()
	waitFor(t, "six more polls", 30*time.Second, func() bool { return polls() >= p1+6 })
	if n := opens() - first; n > 1 {
		t.Fatalf("agent.db opened %d times in %d polls after the first, want none", n, polls()-p1)
	}
	var rep struct {
		LastCheck struct {
			Time   time.Time `json:"time"`
			Result string    `json:"result"`
		} `json:"last_check"`
	}
	json.Unmarshal([]byte(w.mustAgent("status", "--json").stdout), &rep)
	if rep.LastCheck.Result != "up-to-date" || time.Since(rep.LastCheck.Time) > 5*time.Second {
		t.Fatalf("status shows the last check %+v, not a poll of the last seconds", rep.LastCheck)
	}
	// A new release: the next poll's 200 takes the full check, which installs it.
	w.release("scoreboard", "3.0.0", randomBytes(4096, 7), 60)
	waitFor(t, "the new release installed", 30*time.Second, func() bool {
		return strings.Contains(w.mustAgent("status").stdout, "3.0.0")
	})
	// SIGUSR1: the whole check, agent.db opened.
	waitFor(t, "quiet polls again", 30*time.Second, func() bool { p := polls(); time.Sleep(3 * time.Second); return polls() > p+1 })
	before := opens()
	// strace's child is the agent.
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	pid, err := strconv.Atoi(strings.TrimSpace(string(kids)))
	if err != nil {
		t.Fatalf("the agent under strace: %q %v", kids, err)
	}
	syscall.Kill(pid, syscall.SIGUSR1)
	waitFor(t, "the asked-for check to open agent.db", 20*time.Second, func() bool { return opens() > before })
}
