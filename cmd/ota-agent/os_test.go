package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/agent"
)

// osWorld is a world whose OS image goes to two partition files under GRUB's environment.
func osWorld(t *testing.T) (w *world, pa, pb, genv string) {
	if _, err := exec.LookPath("grub-editenv"); err != nil {
		t.Skip("SKIPPED: grub-editenv not installed (apt-get install grub-common)")
	}
	w = newWorld(t, 8192, "")
	pa, pb, genv = filepath.Join(w.dir, "pa.img"), filepath.Join(w.dir, "pb.img"), filepath.Join(w.dir, "grubenv")
	os.WriteFile(pa, make([]byte, 1<<20), 0o644)
	os.WriteFile(pb, make([]byte, 1<<20), 0o644)
	os.WriteFile(filepath.Join(w.dir, "boot_id"), []byte("1"), 0o644)
	exec.Command("grub-editenv", genv, "create").Run()
	w.writeConfig("slots:\n  os:\n    backend: partition\n    devices: {a: " + pa + ", b: " + pb + "}\n    bootloader: grub\n    grubenv: " + genv + "\n    boot_id_file: " + filepath.Join(w.dir, "boot_id") + "\n")
	return w, pa, pb, genv
}

// TestOSCrashChains: the process stops in each state of an OS install (before the image is
// written, written, the bootloader told to try it); the booted partition is never touched,
// the environment never points at a half-written slot, and a restart finishes or redoes the
// install.
func TestOSCrashChains(t *testing.T) {
	for _, state := range []agent.State{agent.Receive, agent.Verify, agent.Compose, agent.WriteOS, agent.SetEnv, agent.Reboot} {
		step := string(state)
		t.Run(step, func(t *testing.T) {
			w, pa, pb, genv := osWorld(t)
			r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=" + step}, "check", "--once")
			if r.code != 99 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			env, _ := exec.Command("grub-editenv", genv, "list").Output()
			trying := strings.Contains(string(env), "upgrade_available=1")
			if trying != (state == agent.Reboot) {
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

// TestOSRebootCrashChains: after the reboot into the new image, the process stops before its
// health is judged and before it is marked good; the next start finishes: committed.
func TestOSRebootCrashChains(t *testing.T) {
	for _, state := range []agent.State{agent.OSTrial, agent.OSCommit} {
		t.Run(string(state), func(t *testing.T) {
			w, _, _, genv := osWorld(t)
			w.mustAgent("check", "--once")
			os.WriteFile(filepath.Join(w.dir, "boot_id"), []byte("2"), 0o644) // rebooted into b
			if r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=" + string(state)}, "check", "--once"); r.code != 99 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			w.mustAgent("check", "--once")
			if st := w.mustAgent("status"); !strings.Contains(st.stdout, "booted b, committed b") {
				t.Fatalf("after the restart:\n%s", st.stdout)
			}
			if env, _ := exec.Command("grub-editenv", genv, "list").Output(); !strings.Contains(string(env), "upgrade_available=0") {
				t.Fatalf("environment %q", env)
			}
			w.mustAgent("verify")
		})
	}
}
