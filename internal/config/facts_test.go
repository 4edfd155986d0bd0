package config

import (
	"runtime"
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
