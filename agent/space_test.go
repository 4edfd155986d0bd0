package agent

import (
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
)

// A metadata-mode update that cannot fit in the state directory's filesystem is refused
// before a byte is downloaded, with need and have in the message; one that fits installs.
func TestNoSpaceRefusedBeforeDownload(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to mount a small tmpfs as the state directory")
	}
	e := newEnv(t, testserver.Options{})
	state := filepath.Join(e.dir, "state")
	os.MkdirAll(state, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=18m", "tmpfs", state).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", state).Run() })
	cfg := e.config(metadataMode(e))
	e.release("scoreboard", "prod", "9", make([]byte, 4<<20), 50)
	before := e.srv.Stats().RequestsByPath["/firmware"]
	_, err := e.check(cfg)
	if err == nil || !strings.Contains(err.Error(), "not enough space for this update: need 4.") || !strings.Contains(err.Error(), state) {
		t.Fatalf("check = %v, want a refusal naming need, have and %s", err, state)
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) {
		t.Errorf("a full disk is classed as %v", err)
	}
	if n := e.srv.Stats().RequestsByPath["/firmware"]; n != before {
		t.Errorf("%d firmware requests after the refusal", n-before)
	}
	if _, err := os.Lstat(filepath.Join(state, "current")); err == nil {
		t.Error("something was installed")
	}
	e.release("scoreboard", "prod", "10", make([]byte, 256<<10), 51)
	if res, err := e.check(cfg); err != nil || res.Result != ResultUpdated {
		t.Fatalf("a release that fits: %v %v", res, err)
	}
}

// A full payload that cannot fit fails as a local problem with the free space in the
// message (refused up front when the answer's size is known, else at the member's tar header,
// before its bytes are written: "need X, have Y"), never as the server's or the network's
// fault; the active slot is untouched and a release that fits installs next.
func TestNoSpaceFullPayload(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to mount a small tmpfs as the state directory")
	}
	// No edge: it would go on filling its cache with the refused answer after the agent hung
	// up and serve it again after the release that fits (a real edge does, for 100 s).
	e := newEnv(t, testserver.Options{NoEdge: true})
	state := filepath.Join(e.dir, "state")
	os.MkdirAll(state, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", state).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", state).Run() })
	cfg := e.config("")
	if _, err := e.check(cfg); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, state)
	e.release("scoreboard", "prod", "9", randomish(30<<20), 50)
	_, err := e.check(cfg)
	if err == nil || !strings.Contains(err.Error(), "not enough space for payload member scoreboard_9: need 30.0 MiB") {
		t.Fatalf("check = %v, want a local space error with figures", err)
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) {
		t.Errorf("a full disk is classed as %v", err)
	}
	if got := takeSnapshot(t, state); !maps.Equal(got.files, before.files) {
		t.Fatal("the active slot changed")
	}
	e.release("scoreboard", "prod", "10", make([]byte, 256<<10), 51)
	if res, err := e.check(cfg); err != nil || res.Result != ResultUpdated {
		t.Fatalf("a release that fits: %v %v", res, err)
	}
}

func randomish(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// install.max_file_size refuses a larger binary before a byte of it is written, in both
// payload modes; install.space_margin is the margin the free-space check keeps.
func TestLimitKeys(t *testing.T) {
	for _, mode := range []string{"full", "metadata"} {
		e := newEnv(t, testserver.Options{})
		server := "server:\n  url: " + e.base + "/package\n  payload: " + mode + "\n  firmware: {" + e.cat.Bucket + ": " + e.base + "/firmware/}\n"
		_, err := e.check(e.config(server + "install:\n  max_file_size: 4KiB\n"))
		if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "install.max_file_size") {
			t.Fatalf("%s: a binary over install.max_file_size: %v", mode, err)
		}
		if _, err := e.agent(e.config(server)).Slots.Active(); err == nil {
			t.Fatalf("%s: something was installed", mode)
		}
		_, err = e.check(e.config(server + "install:\n  space_margin: 8000GiB\n"))
		if err == nil || !strings.Contains(err.Error(), "+8000.0 GiB margin, install.space_margin") {
			t.Fatalf("%s: install.space_margin: %v", mode, err)
		}
	}
}
