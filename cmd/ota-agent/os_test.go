package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOSCrashChains: the process stops after each step of an OS install (image written,
// journalled, environment set); the booted partition is never touched, the environment never
// points at a half-written slot, and a restart finishes or redoes the install.
func TestOSCrashChains(t *testing.T) {
	if _, err := exec.LookPath("grub-editenv"); err != nil {
		t.Skip("SKIPPED: grub-editenv not installed (apt-get install grub-common)")
	}
	for _, step := range []string{"received", "verified", "os-written", "os-pending", "os-env"} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t, 8192, "")
			pa, pb, genv := filepath.Join(w.dir, "pa.img"), filepath.Join(w.dir, "pb.img"), filepath.Join(w.dir, "grubenv")
			os.WriteFile(pa, make([]byte, 1<<20), 0o644)
			os.WriteFile(pb, make([]byte, 1<<20), 0o644)
			os.WriteFile(filepath.Join(w.dir, "boot_id"), []byte("1"), 0o644)
			exec.Command("grub-editenv", genv, "create").Run()
			w.writeConfig("slots:\n  os:\n    backend: partition\n    devices: {a: " + pa + ", b: " + pb + "}\n    bootloader: grub\n    grubenv: " + genv + "\n    boot_id_file: " + filepath.Join(w.dir, "boot_id") + "\n")
			r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=" + step}, "check", "--once")
			if r.code != 99 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			env, _ := exec.Command("grub-editenv", genv, "list").Output()
			trying := strings.Contains(string(env), "upgrade_available=1")
			if trying != (step == "os-env") {
				t.Fatalf("after a crash at %s the environment says %q", step, env)
			}
			if a, _ := os.ReadFile(pa); strings.Trim(string(a), "\x00") != "" {
				t.Fatal("the booted partition a was written")
			}
			w.mustAgent("check", "--once")
			env, _ = exec.Command("grub-editenv", genv, "list").Output()
			if !strings.Contains(string(env), "ota_slot=b") || !strings.Contains(string(env), "upgrade_available=1") {
				t.Fatalf("after the restart: %q", env)
			}
			st := w.mustAgent("status")
			if !strings.Contains(st.stdout, "marked to try b") {
				t.Fatalf("status:\n%s", st.stdout)
			}
			// The device reboots into b; mark-good by hand commits it.
			os.WriteFile(filepath.Join(w.dir, "boot_id"), []byte("2"), 0o644)
			w.mustAgent("mark-good")
			if st := w.mustAgent("status"); !strings.Contains(st.stdout, "booted b, committed b") {
				t.Fatalf("after mark-good:\n%s", st.stdout)
			}
			if v := w.mustAgent("verify"); !strings.Contains(v.stdout, "OS slot b holds os_armv8 1.1.0") {
				t.Fatalf("verify: %s", v.stdout)
			}
			f, _ := os.OpenFile(pb, os.O_WRONLY, 0)
			f.WriteAt([]byte("X"), 10)
			f.Close()
			if r := w.agent(nil, "verify"); r.code != 1 || !strings.Contains(r.stderr, "differs") {
				t.Fatalf("verify of a damaged OS partition: %d %s", r.code, r.stderr)
			}
		})
	}
}
