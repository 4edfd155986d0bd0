package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		raw, _ := os.ReadFile(trace)
		n := 0
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.Contains(line, "sync") && !strings.Contains(line, "/textfile") { // metrics.textfile and its directory: for tmpfs
				n++
				t.Logf("%s", line)
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
