package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCPUArchAuto reads the kernel; `make test` runs this under qemu-arm and qemu-aarch64,
// where the kernel reports armv7l and aarch64.
func TestCPUArchAuto(t *testing.T) {
	c := &Config{}
	c.Device.CPUArch = "auto"
	got, err := c.CPUArch()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"arm": "armv7", "arm64": "armv8", "amd64": "x86_64"}[runtime.GOARCH]
	if want != "" && got != want {
		t.Fatalf("auto on %s: %q, want %q", runtime.GOARCH, got, want)
	}
}

// device.id wins; else /etc/machine-id under the sysroot (an image's own); an empty or
// uninitialized one (a first boot not done yet) is no identity, said why.
func TestDeviceID(t *testing.T) {
	root := t.TempDir()
	c := &Config{Root: root}
	if _, err := c.DeviceID(); err == nil || !strings.Contains(err.Error(), "machine-id") {
		t.Fatalf("no machine-id: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	for body, want := range map[string]string{"uninitialized\n": "", "\n": "", "0123456789abcdef0123456789abcdef\n": "0123456789abcdef0123456789abcdef"} {
		os.WriteFile(filepath.Join(root, "etc", "machine-id"), []byte(body), 0o444)
		if id, err := c.DeviceID(); id != want || (want == "") != (err != nil) {
			t.Errorf("machine-id %q: %q, %v", body, id, err)
		}
	}
	c.Device.ID = " gw-7 "
	if id, err := c.DeviceID(); id != "gw-7" || err != nil {
		t.Errorf("device.id: %q, %v", id, err)
	}
}
