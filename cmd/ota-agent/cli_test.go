package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command's --help prints that command's flags and exits 0; the global usage lists
// every global flag.
func TestCommandHelp(t *testing.T) {
	w := newWorld(t, 4096, "")
	for _, c := range []struct {
		cmd   string
		flags []string
	}{
		{"check", []string{"--once", "--json", "--dry-run", "--verbose"}},
		{"status", []string{"--json", "--config"}},
		{"run", []string{"--state-dir"}}, {"verify", nil}, {"rollback", nil}, {"mark-good", nil}, {"version", nil},
	} {
		for _, h := range []string{"--help", "-h"} {
			r := w.agent(nil, c.cmd, h)
			if r.code != 0 || !strings.Contains(r.stdout, "usage: ota-agent "+c.cmd) || r.stderr != "" {
				t.Errorf("%s %s: exit %d\n%s%s", c.cmd, h, r.code, r.stdout, r.stderr)
			}
			for _, f := range c.flags {
				if !strings.Contains(r.stdout, f) {
					t.Errorf("%s %s does not list %s:\n%s", c.cmd, h, f, r.stdout)
				}
			}
		}
	}
	if r := w.agent(nil, "--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "ota-agent ") {
		t.Errorf("--version: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	for _, cmd := range []string{"retry", "apply", "install"} {
		if r := w.agent(nil, cmd, "--help"); r.code != 0 || !strings.Contains(r.stdout, "usage: ota-agent "+cmd) {
			t.Errorf("%s --help: exit %d\n%s", cmd, r.code, r.stdout)
		}
	}
	r := w.agent(nil, "--help")
	for _, f := range []string{"--config", "--root", "--state-dir", "--server-url", "--log-format", "-v, --verbose", "--help", "--version"} {
		if r.code != 0 || !strings.Contains(r.stdout, f) {
			t.Errorf("the usage lacks %s (exit %d)", f, r.code)
		}
	}
}

// A failure is reported once: one log line at WARN or above and one line from the command,
// never an INFO line for it; with --json, every outcome is JSON (configuration errors too),
// durations are in seconds and a failed check names the slot the device is on.
func TestFailureReportedOnce(t *testing.T) {
	w := newWorld(t, 4096, "")
	w.mustAgent("check", "--once")
	gone := []string{"--server-url", "http://127.0.0.1:1/package"} // nothing listens there
	r := w.agent(nil, append(gone, "check", "--once")...)
	if r.code != 3 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.HasPrefix(lines[1], "ota-agent check: server or network unavailable") {
		t.Fatalf("want one WARN log line and one error line:\n%s", r.stderr)
	}
	if strings.Count(r.stderr, "127.0.0.1:1/") != 2 {
		t.Errorf("the URL is repeated within one line:\n%s", r.stderr)
	}
	r = w.agent(nil, append(gone, "check", "--once", "--json")...)
	var res struct {
		Result, Slot, Error string
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 3 || res.Result != "failed" || res.Slot != "a" || res.Error == "" {
		t.Fatalf("check --json on failure: exit %d %+v %v\n%s", r.code, res, err, r.stdout)
	}
	for _, args := range [][]string{{"--config", filepath.Join(w.dir, "missing.yaml"), "check", "--once", "--json"}, {"check", "--json"}} {
		r = w.agent(nil, args...)
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 2 || res.Result != "failed" || res.Error == "" || strings.Contains(r.stderr, "ota-agent check:") {
			t.Errorf("%v: exit %d, JSON %v\n%s%s", args, r.code, err, r.stdout, r.stderr)
		}
	}
	var st struct {
		LastCheck map[string]any `json:"last_check"`
	}
	r = w.mustAgent("status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.LastCheck["duration_s"] == nil || st.LastCheck["duration"] != nil {
		t.Fatalf("status --json durations: %v\n%s", err, r.stdout)
	}
	if d := st.LastCheck["duration_s"].(float64); d <= 0 || d > 60 {
		t.Errorf("duration_s %v is not in seconds", d)
	}
}

// status exits 0 and says so for a state directory that was never used, as for one whose
// last check failed.
func TestStatusFreshStateDir(t *testing.T) {
	w := newWorld(t, 4096, "")
	r := w.agent(nil, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing installed yet") {
		t.Fatalf("fresh: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(w.state); err == nil {
		t.Fatal("status created the state directory")
	}
	r = w.agent(nil, "status", "--json")
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 || st["status"] != "" {
		t.Fatalf("fresh --json: exit %d %v\n%s", r.code, err, r.stdout)
	}
	w.agent(nil, "--server-url", "http://127.0.0.1:1/package", "check", "--once")
	if r := w.agent(nil, "status"); r.code != 0 || !strings.Contains(r.stdout, "last check: failed") {
		t.Fatalf("after a failed first check: exit %d\n%s", r.code, r.stdout)
	}
}
