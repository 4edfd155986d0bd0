package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheckJSONAndExitCodes(t *testing.T) {
	w := newWorld(t, 4096, "")
	r := w.mustAgent("check", "--once", "--json")
	var res struct {
		Result string `json:"result"`
		Slot   string `json:"slot"`
		Apps   map[string]struct {
			Version string `json:"version"`
			MD5     string `json:"md5"`
			SHA256  string `json:"sha256"`
			Serial  int64  `json:"serial"`
			Changed bool   `json:"changed"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	if res.Result != "updated" || res.Slot != "a" || !res.Apps["scoreboard"].Changed || res.Apps["scoreboard"].Serial == 0 {
		t.Fatalf("result %+v", res)
	}
	r = w.mustAgent("check", "--once")
	if !strings.Contains(r.stdout, "up-to-date") || !strings.Contains(r.stdout, "304") {
		t.Fatalf("second check: %s", r.stdout)
	}
	w.mustAgent("verify")
	st := w.mustAgent("status", "--json")
	if !strings.Contains(st.stdout, `"scoreboard"`) || !strings.Contains(st.stdout, `"last_check"`) {
		t.Fatalf("status --json: %s", st.stdout)
	}
	// Exit codes.
	for _, c := range []struct {
		name string
		args []string
		code int
	}{
		{"unknown command", []string{"frobnicate"}, 2},
		{"check without --once", []string{"check"}, 2},
		{"unknown flag", []string{"check", "--once", "--nope"}, 2},
		{"missing config", []string{"--config", "/nonexistent.yaml", "check", "--once"}, 2},
	} {
		if r := w.agent(nil, c.args...); r.code != c.code {
			t.Errorf("%s: exit %d, want %d (%s)", c.name, r.code, c.code, r.stderr)
		}
	}
	// A tampered slot: verify fails with 1 and names the app.
	os.WriteFile(filepath.Join(w.state, "current", "scoreboard"), []byte("tampered"), 0o644)
	if r := w.agent(nil, "verify"); r.code != 1 || !strings.Contains(r.stderr, "scoreboard") {
		t.Fatalf("verify of a tampered slot: %d %s", r.code, r.stderr)
	}
}

func TestConfigErrorsNameKeyAndFile(t *testing.T) {
	w := newWorld(t, 1024, "")
	for _, c := range []struct{ yaml, key string }{
		{"server:\n  payload: full\n", "server.url"},
		{"server:\n  url: http://127.0.0.1:1/package\n  payload: sometimes\n", "server.payload"},
		{"server:\n  url: http://127.0.0.1:1/package\nsurver:\n  url: x\n", "surver.url"},
		{"server:\n  url: http://127.0.0.1:1/package\npoll:\n  interval: soon\n", "poll.interval"},
		{"server:\n  url: ftp://example/package\n", "server.url"},
		{"server:\n  url: http://127.0.0.1:1/package\ntrust:\n  allow_unsigned: maybe\n", "trust.allow_unsigned"},
		{"server:\n  url: http://127.0.0.1:1/package\ndevice:\n  pins: {os: beta}\n", "device.pins.os"},
		{"server: [\n", "config"},
	} {
		os.WriteFile(w.cfg, []byte(c.yaml), 0o644)
		r := w.agent(nil, "check", "--once")
		if r.code != 2 || !strings.Contains(r.stderr, c.key) || !strings.Contains(r.stderr, w.cfg) {
			t.Errorf("%q: exit %d, stderr %q (want 2, naming %s and the file)", c.yaml, r.code, r.stderr, c.key)
		}
	}
	// The environment fills what the file lacks; flags win over both.
	os.WriteFile(w.cfg, []byte("device:\n  cpu_arch: armv8\ntrust:\n  allow_unsigned: true\n"), 0o644)
	r := w.agent([]string{"OTA_AGENT_SERVER_URL=" + w.base + "/package", "OTA_AGENT_STATE_DIR=" + w.state}, "check", "--once", "--json")
	if r.code != 0 {
		t.Fatalf("env config: %d %s", r.code, r.stderr)
	}
	r = w.agent([]string{"OTA_AGENT_SERVER_URL=http://127.0.0.1:1/package"}, "--server-url", w.base+"/package", "--state-dir", w.state, "check", "--once")
	if r.code != 0 {
		t.Fatalf("flags over env: %d %s", r.code, r.stderr)
	}
}

func TestUnavailableServerExit3(t *testing.T) {
	w := newWorld(t, 1024, "")
	os.WriteFile(w.cfg, []byte("server:\n  url: http://127.0.0.1:1/package\ndevice:\n  cpu_arch: armv8\nstate_dir: "+w.state+"\n"), 0o644)
	if r := w.agent(nil, "check", "--once"); r.code != 3 || !strings.Contains(r.stderr, "connection refused") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// TestDryRunWritesNothing: --dry-run takes no lock and writes nothing: before the first
// install it does not even create the state directory, and it answers while a daemon runs.
func TestDryRunWritesNothing(t *testing.T) {
	w := newWorld(t, 4096, "poll:\n  interval: 1h\n")
	r := w.mustAgent("check", "--once", "--dry-run")
	if !strings.Contains(r.stdout, "plan (dry run") {
		t.Fatalf("no plan:\n%s", r.stdout)
	}
	if _, err := os.Stat(w.state); err == nil {
		t.Fatal("a dry run created the state directory")
	}
	cmd := exec.Command(bin, "--config", w.cfg, "run")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	waitFor(t, "the daemon's first check to be recorded", 10*time.Second, func() bool {
		return strings.Contains(w.agent(nil, "status", "--json").stdout, `"last_check"`)
	})
	w.release("scoreboard", "3.1.0", []byte("three one"), 60)
	before, _ := os.ReadFile(filepath.Join(w.state, "agent.db"))
	r = w.mustAgent("check", "--once", "--dry-run")
	if !strings.Contains(r.stdout, "scoreboard") || !strings.Contains(r.stdout, "3.1.0") {
		t.Fatalf("plan while the daemon runs:\n%s%s", r.stdout, r.stderr)
	}
	after, _ := os.ReadFile(filepath.Join(w.state, "agent.db"))
	if string(before) != string(after) {
		t.Fatal("a dry run changed the database")
	}
}
