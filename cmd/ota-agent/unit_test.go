package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestUnitFileVerifies runs systemd-analyze verify on the shipped unit: no warnings but the
// one about the binary not being installed on this machine.
func TestUnitFileVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("SKIPPED: systemd-analyze not installed (apt-get install systemd)")
	}
	out, _ := exec.Command(sa, "verify", "--man=no", "../../dist/ota-agent.service").CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "is not executable") || strings.Contains(line, "command not found") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
}
