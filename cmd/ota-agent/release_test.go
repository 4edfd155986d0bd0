package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/internal/testenv"
)

// The release build (no otatest tag, what `make build` and `make cross` ship) has no crash
// points and follows no plain-http download URL, even to loopback.
func TestReleaseBuildHasNoTestHooks(t *testing.T) {
	rel := filepath.Join(t.TempDir(), "ota-agent")
	if out, err := exec.Command("go", "build", "-trimpath", "-tags", testenv.AgentTags, "-gcflags", testenv.AgentGCFlags, "-ldflags", "-s -w", "-o", rel, ".").CombinedOutput(); err != nil {
		t.Fatalf("release build: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(rel)
	for _, hook := range []string{"OTA_AGENT_TEST_CRASH_AFTER", "OTA_AGENT_TEST_NOW"} {
		if bytes.Contains(raw, []byte(hook)) {
			t.Fatal("the release binary reads " + hook)
		}
	}
	// HTTP/1.1 only (protocol.md 1.4): net/http's HTTP/2 is not linked, and the Makefile builds
	// with the same tags as this test.
	if bytes.Contains(raw, []byte("http2: client connection lost")) {
		t.Fatal("the release binary links net/http's HTTP/2")
	}
	mk, _ := os.ReadFile("../../Makefile")
	if !bytes.Contains(mk, []byte("AGENT_TAGS := "+testenv.AgentTags+"\n")) || !bytes.Contains(mk, []byte("AGENT_GCFLAGS := "+testenv.AgentGCFlags+"\n")) {
		t.Fatalf("the Makefile's AGENT_TAGS or AGENT_GCFLAGS are not testenv's (%s, %s)", testenv.AgentTags, testenv.AgentGCFlags)
	}
	// Metadata mode against the loopback test server, with no firmware base configured: only
	// the answer's plain-http download URLs lead to the binaries.
	w := newWorld(t, 4096, "#metadata\n")
	cfg, _ := os.ReadFile(w.cfg)
	lines := strings.Split(string(cfg), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "firmware:") {
			lines[i] = ""
		}
	}
	os.WriteFile(w.cfg, []byte(strings.Join(lines, "\n")), 0o644)
	cmd := exec.Command(rel, "--config", w.cfg, "check", "--once")
	cmd.Env = append(os.Environ(), "OTA_AGENT_TEST_CRASH_AFTER=received")
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if code == 99 {
		t.Fatalf("the release binary stopped at a crash point:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "ignoring a download URL that is not https") {
		t.Fatalf("the release binary followed plain http (exit %d):\n%s", code, out)
	}
	// The test build does follow it (the rest of the suite depends on that).
	if r := w.agent(nil, "check", "--once"); r.code != 0 {
		t.Fatalf("test build: exit %d\n%s", r.code, r.stderr)
	}
}
