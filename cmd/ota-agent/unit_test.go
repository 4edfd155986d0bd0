package main

import (
	"os"
	"os/exec"
	"path/filepath"
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

// TestBootScriptInDocs: docs/bootloader.md shows the boot script make test-system boots,
// byte for byte, and the partition drop-in verifies with the unit.
func TestBootScriptInDocs(t *testing.T) {
	script, err := os.ReadFile("../../dist/bootloader/boot.cmd")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/bootloader.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```\n"+string(script)+"```") {
		t.Error("docs/bootloader.md does not show dist/bootloader/boot.cmd as it is")
	}
	grub, _ := os.ReadFile("../../dist/bootloader/grub.cfg")
	if len(grub) == 0 || !strings.Contains(string(doc), "```\n"+string(grub)+"```") {
		t.Error("docs/bootloader.md does not show dist/bootloader/grub.cfg as it is")
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("SKIPPED: systemd-analyze not installed (apt-get install systemd)")
	}
	// The unit with the drop-in, as systemd would merge them.
	dir := t.TempDir()
	unit, _ := os.ReadFile("../../dist/ota-agent.service")
	drop, _ := os.ReadFile("../../dist/ota-agent.service.d/partition.conf")
	os.WriteFile(filepath.Join(dir, "ota-agent.service"), unit, 0o644)
	os.MkdirAll(filepath.Join(dir, "ota-agent.service.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "ota-agent.service.d", "partition.conf"), drop, 0o644)
	out, _ := exec.Command(sa, "verify", "--man=no", filepath.Join(dir, "ota-agent.service")).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "is not executable") || strings.Contains(line, "command not found") {
			continue
		}
		t.Errorf("systemd-analyze verify with the partition drop-in: %s", line)
	}
}
