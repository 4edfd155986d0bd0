package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/internal/testenv"
)

// TestBakeRootfsThenArmUnderQEMU is the image builders' recipe: the host binary fills slot A
// of a target rootfs with --root; the armv7 binary, run under qemu-arm-static on that rootfs,
// finds itself up to date. Nothing written points outside the rootfs.
func TestBakeRootfsThenArmUnderQEMU(t *testing.T) {
	w := newWorld(t, 16384, "")
	root := filepath.Join(w.dir, "rootfs")
	os.MkdirAll(filepath.Join(root, "etc/ota-agent/keys"), 0o755)
	pub, _ := os.ReadFile(w.tw.PubPath)
	os.WriteFile(filepath.Join(root, "etc/ota-agent/keys/release.pub.pem"), pub, 0o644)
	cfg := filepath.Join(root, "etc/ota-agent/config.yaml")
	os.WriteFile(cfg, []byte("server:\n  url: "+w.base+"/package\ndevice:\n  cpu_arch: armv7\n  attributes: {camera: prod}\ntrust:\n  keys: [/etc/ota-agent/keys/release.pub.pem]\n"), 0o644)
	out, err := exec.Command(bin, "--root", root, "--config", cfg, "check", "--once").CombinedOutput()
	if err != nil {
		t.Fatalf("bake: %v\n%s", err, out)
	}
	cur := filepath.Join(root, "var/lib/ota-agent/current")
	if target, _ := os.Readlink(cur); target != "slots/a" {
		t.Fatalf("current -> %q, want the relative slots/a", target)
	}
	for _, app := range []string{"os_armv7", "videoStreamer"} {
		if _, err := os.Stat(filepath.Join(cur, app)); err != nil {
			t.Fatalf("slot A lacks %s", app)
		}
	}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if l, _ := os.Readlink(p); strings.HasPrefix(l, w.dir) || filepath.IsAbs(l) {
				t.Errorf("%s points to the build host: %s", p, l)
			}
		}
		return nil
	})
	qemu, err := exec.LookPath("qemu-arm-static")
	if err != nil {
		t.Skip("SKIPPED the armv7 half: qemu-arm-static not installed (apt-get install qemu-user-static)")
	}
	arm := filepath.Join(t.TempDir(), "ota-agent-armv7")
	build := exec.Command("go", "build", "-tags", "otatest,"+testenv.AgentTags, "-o", arm, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("armv7 build: %v\n%s", err, out)
	}
	out, err = exec.Command(qemu, arm, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "linux/arm") {
		t.Fatalf("armv7 version under QEMU: %v %s", err, out)
	}
	out, err = exec.Command(qemu, arm, "--root", root, "--config", cfg, "check", "--once", "--json").Output()
	if err != nil {
		t.Fatalf("armv7 check under QEMU: %v %s", err, out)
	}
	var res struct{ Result string }
	json.Unmarshal(out, &res)
	if res.Result != "up-to-date" {
		t.Fatalf("armv7 first check on the baked rootfs: %s", out)
	}
}
