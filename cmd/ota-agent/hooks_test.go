package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHookOutputBounded: a hook printing 300 MB is logged as a short tail, and the agent's
// peak RSS stays small (it was 1.3 GB when the output was buffered whole).
func TestHookOutputBounded(t *testing.T) {
	w := newWorld(t, 4096, "hooks:\n  pre_install: \"head -c 300000000 /dev/zero | tr '\\\\0' x\"\n")
	w.writeConfig("hooks:\n  pre_install: \"head -c 300000000 /dev/zero | tr '\\\\0' x; echo done-printing\"\n")
	r := w.agent(nil, "check", "--once")
	if r.code != 0 {
		t.Fatalf("check: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "done-printing") || !strings.Contains(r.stderr, "output_bytes=300000014") {
		t.Errorf("the hook's tail or byte count is not logged:\n%.2000s", r.stderr)
	}
	if len(r.stderr) > 64<<10 {
		t.Errorf("%d bytes of log for one hook", len(r.stderr))
	}
	if rss := r.maxRSS; rss > 100<<20 {
		t.Errorf("peak RSS %d MiB while a hook printed 300 MB", rss>>20)
	}
	w.mustAgent("verify")
}

// TestHookTimeoutEndsItsGroup: a hook that times out is ended with everything it started;
// nothing it left behind keeps running.
func TestHookTimeoutEndsItsGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	hook := "sh -c 'trap \"\" TERM; sleep 300' & echo $! > " + pidfile + "; sleep 300"
	w := newWorld(t, 4096, "")
	w.writeConfig("hooks:\n  pre_install: |\n    " + hook + "\n  timeout: 1s\n")
	r := w.agent(nil, "check", "--once")
	if r.code == 0 || !strings.Contains(r.stderr, "timed out after 1s (its process group was ended)") {
		t.Fatalf("check: exit %d\n%s", r.code, r.stderr)
	}
	raw, _ := os.ReadFile(pidfile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("no child pid: %q", raw)
	}
	for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond) // the zombie is reaped by init
	}
	if err := syscall.Kill(pid, 0); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the hook's child %d (ignoring TERM) outlived the timeout", pid)
	}
	if _, err := os.Lstat(filepath.Join(w.state, "current")); err == nil {
		t.Error("installed although pre_install timed out")
	}
}
