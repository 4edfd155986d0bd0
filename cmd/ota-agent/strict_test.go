package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Run as root, the agent refuses a configuration, trust key or hook script that another
// user could have written (exit 2, naming the file and its mode or owner), and runs once it
// is fixed; nothing is installed meanwhile.
func TestStrictModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the agent checks file modes only when it runs as root")
	}
	w := newWorld(t, 4096, "")
	hookDir := filepath.Join(w.dir, "hooks")
	os.MkdirAll(hookDir, 0o755)
	hook := filepath.Join(hookDir, "health.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	w.writeConfig("hooks:\n  health: " + hook + " --quick\n")
	key := w.tw.PubPath
	for _, c := range []struct {
		name, want string
		spoil, fix func()
	}{
		{"config writable by others", "mode 0666", func() { os.Chmod(w.cfg, 0o666) }, func() { os.Chmod(w.cfg, 0o644) }},
		{"trust key owned by another user", "owned by uid 1000", func() { os.Chown(key, 1000, 0) }, func() { os.Chown(key, 0, 0) }},
		{"hook script group-writable", "mode 0775", func() { os.Chmod(hook, 0o775) }, func() { os.Chmod(hook, 0o755) }},
		{"hook directory writable by others", "mode 0777", func() { os.Chmod(hookDir, 0o777) }, func() { os.Chmod(hookDir, 0o755) }},
	} {
		c.spoil()
		r := w.agent(nil, "check", "--once")
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "will not trust it") {
			t.Errorf("%s: exit %d, want 2 naming %q:\n%s", c.name, r.code, c.want, r.stderr)
		}
		c.fix()
	}
	if _, err := os.Lstat(filepath.Join(w.state, "current")); err == nil {
		t.Fatal("installed with an untrusted file")
	}
	w.mustAgent("check", "--once")
	w.converges()
}

// Configuration errors name their real source: a flag, an OTA_AGENT_* variable or the file;
// log.level is checked; an oversized file is refused before it is parsed.
func TestConfigErrorSources(t *testing.T) {
	w := newWorld(t, 4096, "")
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"OTA_AGENT_POLL_INTERVAL=soon"}, nil, "poll.interval in the environment (OTA_AGENT_POLL_INTERVAL)"},
		{nil, []string{"--state-dir", "relative/dir"}, "state_dir in the command line (--state-dir)"},
		{[]string{"OTA_AGENT_LOG_LEVEL=chatty"}, nil, `log.level in the environment (OTA_AGENT_LOG_LEVEL): "chatty": want debug, info, warn or error`},
	} {
		r := w.agent(c.env, append(c.args, "check", "--once")...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, want 2 with %q:\n%s", c.env, c.args, r.code, c.want, r.stderr)
		}
	}
	w.writeConfig("log:\n  level: chatty\n")
	if r := w.agent(nil, "check", "--once"); r.code != 2 || !strings.Contains(r.stderr, "log.level in "+w.cfg) {
		t.Errorf("log.level in the file: exit %d\n%s", r.code, r.stderr)
	}
	w.writeConfig("")
	cfg, _ := os.ReadFile(w.cfg)
	os.WriteFile(w.cfg, append(cfg, strings.Repeat("#"+strings.Repeat("x", 1000)+"\n", 1100)...), 0o644)
	if r := w.agent(nil, "check", "--once"); r.code != 2 || !strings.Contains(r.stderr, "over the 1048576 bytes") {
		t.Errorf("a 1.1 MB configuration: exit %d\n%s", r.code, r.stderr)
	}
	w.writeConfig("")
	w.mustAgent("check", "--once")
}
