package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/store"
	"github.com/ota-agent/ota-agent/testserver"
)

// bootRig is a device's OS side made of regular files: two partitions, a bootloader
// environment (real grub-editenv or fw_setenv), and a boot id the test changes to "reboot".
type bootRig struct {
	t          *testing.T
	dir        string
	bootloader string
	env        installer.BootEnv
}

func newBootRig(t *testing.T, dir, bootloader string) *bootRig {
	r := &bootRig{t: t, dir: dir, bootloader: bootloader}
	for _, p := range []string{"pa.img", "pb.img"} {
		os.WriteFile(filepath.Join(dir, p), make([]byte, 1<<20), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "boot_id"), []byte("boot-1\n"), 0o644)
	switch bootloader {
	case "grub":
		if _, err := exec.LookPath("grub-editenv"); err != nil {
			t.Skip("SKIPPED: grub-editenv not installed (apt-get install grub-common)")
		}
		run(t, "grub-editenv", filepath.Join(dir, "grubenv"), "create")
		run(t, "grub-editenv", filepath.Join(dir, "grubenv"), "set", "ota_slot=a", "bootlimit=1")
		r.env = installer.GrubEnv{File: filepath.Join(dir, "grubenv")}
	case "uboot":
		if _, err := exec.LookPath("fw_setenv"); err != nil {
			t.Skip("SKIPPED: fw_setenv not installed (apt-get install libubootenv-tool)")
		}
		os.WriteFile(filepath.Join(dir, "uboot.env"), make([]byte, 0x4000), 0o644)
		os.WriteFile(filepath.Join(dir, "fw_env.config"), []byte(filepath.Join(dir, "uboot.env")+" 0x0 0x4000\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "defaults"), []byte("ota_slot=a\nbootlimit=1\n"), 0o644)
		exec.Command("fw_setenv", "-c", filepath.Join(dir, "fw_env.config"), "-f", filepath.Join(dir, "defaults"), "bootlimit", "1").Run()
		r.env = installer.UBootEnv{Config: filepath.Join(dir, "fw_env.config")}
	}
	if _, err := r.env.Read(); err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t *testing.T, name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v %s", name, args, err, out)
	}
}

func (r *bootRig) yaml() string {
	y := "slots:\n  os:\n    backend: partition\n    devices: {a: " + filepath.Join(r.dir, "pa.img") + ", b: " + filepath.Join(r.dir, "pb.img") + "}\n" +
		"    bootloader: " + r.bootloader + "\n    boot_id_file: " + filepath.Join(r.dir, "boot_id") + "\n"
	if r.bootloader == "grub" {
		return y + "    grubenv: " + filepath.Join(r.dir, "grubenv") + "\n"
	}
	return y + "    fw_env_config: " + filepath.Join(r.dir, "fw_env.config") + "\n"
}

func (r *bootRig) vars() map[string]string {
	v, err := r.env.Read()
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

// boot plays the bootloader with bootlimit=1: a first boot on trial counts, a second one
// falls back to the other slot; then a new boot id.
func (r *bootRig) boot(n int) {
	v := r.vars()
	if v["upgrade_available"] == "1" {
		set := map[string]string{"bootcount": "1"}
		if v["bootcount"] != "0" { // past bootlimit: fall back
			other := map[string]string{"a": "b", "b": "a"}[v["ota_slot"]]
			set = map[string]string{"ota_slot": other, "upgrade_available": "0", "bootcount": "0"}
		}
		if err := r.env.Write(set); err != nil {
			r.t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(r.dir, "boot_id"), []byte(fmt.Sprintf("boot-%d\n", n+1)), 0o644)
}

func (r *bootRig) partition(slot string, n int) []byte {
	b, _ := os.ReadFile(filepath.Join(r.dir, "p"+slot+".img"))
	return b[:n]
}

func TestOSPartitions(t *testing.T) {
	for _, bl := range []string{"grub", "uboot"} {
		t.Run(bl, func(t *testing.T) {
			e := newEnv(t, testserver.Options{})
			rig := newBootRig(t, e.dir, bl)
			cfg := e.config(rig.yaml())
			image := func(app, env string) []byte {
				b, _ := os.ReadFile(filepath.Join(e.cat.Dir(), e.row(app, env).File))
				return b
			}
			v1 := image("os_armv8", "prod")
			// 1. Install: the image goes to the partition not booted (b), a is untouched.
			res, err := e.check(cfg)
			if err != nil || !res.Apps["os_armv8"].Changed {
				t.Fatalf("install: %+v %v", res, err)
			}
			if !bytes.Equal(rig.partition("b", len(v1)), v1) || !bytes.Equal(rig.partition("a", 4096), make([]byte, 4096)) {
				t.Fatal("image not on exactly partition b")
			}
			if v := rig.vars(); v["ota_slot"] != "b" || v["upgrade_available"] != "1" || v["bootcount"] != "0" {
				t.Fatalf("env %v", v)
			}
			if _, err := os.Stat(filepath.Join(cfg.StateDir, "current", "os_armv8")); err == nil {
				t.Fatal("the OS image was also put in a directory slot")
			}
			// 2. Before the reboot: no second download, and mark-good refuses.
			if res, err := e.check(cfg); err != nil || res.Result != ResultUpToDate {
				t.Fatalf("check before reboot: %+v %v", res, err)
			}
			a := e.agent(cfg)
			db, _ := a.openRecovered(context.Background())
			if err := a.MarkGood(db); err == nil || !strings.Contains(err.Error(), "reboot first") {
				t.Fatalf("mark-good before reboot: %v", err)
			}
			// 3. The bootloader boots b once; mark-good commits it.
			rig.boot(1)
			a = e.agent(cfg)
			db, _ = a.openRecovered(context.Background())
			if err := a.MarkGood(db); err != nil {
				t.Fatal(err)
			}
			if v := rig.vars(); v["upgrade_available"] != "0" || v["ota_slot"] != "b" {
				t.Fatalf("env after mark-good %v", v)
			}
			if o, _ := db.OS(); o.Committed != "b" || o.Current.MD5 != e.row("os_armv8", "prod").MD5 {
				t.Fatalf("state after mark-good %+v", o)
			}
			// 4. A new image goes to a; the bootloader falls back to b; it is refused.
			e.release("os_armv8", "prod", "1.2.0", bytes.Repeat([]byte("v2"), 3000), 50)
			if _, err := e.check(cfg); err != nil {
				t.Fatal(err)
			}
			if v := rig.vars(); v["ota_slot"] != "a" || v["upgrade_available"] != "1" {
				t.Fatalf("env %v", v)
			}
			rig.boot(2) // bootcount 1
			rig.boot(3) // past the limit: back to b
			if res, err := e.check(cfg); err != nil || res.Result != ResultUpToDate {
				t.Fatalf("check after fallback: %+v %v", res, err)
			}
			a = e.agent(cfg)
			db, _ = a.OpenDBReadOnly()
			refused, _ := db.Refusals()
			if len(refused) != 1 || !strings.Contains(refusedReason(refused), "fell back") {
				t.Fatalf("fallback not recorded: %+v", refused)
			}
			if !bytes.Equal(rig.partition("b", len(v1)), v1) {
				t.Fatal("the committed partition changed")
			}
			if st := a.OSStatus(db); st.Booted != "b" || st.Committed != "b" || st.Try != "" {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func refusedReason(m map[string]store.Refusal) string {
	for _, r := range m {
		return r.Reason
	}
	return ""
}

// TestOSHealthHookOnNewSystem: after the reboot the daemon's health hook confirms the new
// OS (mark-good without a hand).
func TestOSHealthHookOnNewSystem(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	rig := newBootRig(t, e.dir, "grub")
	cfg := e.config(rig.yaml() + "hooks:\n  health: test -z \"$OTA_OS_SLOT\" || test \"$OTA_OS_SLOT\" = b\n")
	if _, err := e.check(cfg); err != nil {
		t.Fatal(err)
	}
	rig.boot(1)
	if _, err := e.agent(cfg).Check(context.Background(), CheckOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := rig.vars(); v["upgrade_available"] != "0" || v["ota_slot"] != "b" {
		t.Fatalf("not committed by the health hook: %v", v)
	}
}

func TestOSTargetChecks(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), make([]byte, 100), 0o644)
	os.WriteFile(filepath.Join(dir, "small"), make([]byte, 10), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), make([]byte, 100), 0o644)
	mi := filepath.Join(dir, "mountinfo")
	os.WriteFile(mi, []byte("36 35 98:0 / /mnt/b rw,noatime master:1 - ext4 "+filepath.Join(dir, "b")+" rw\n"), 0o644)
	for _, c := range []struct {
		devs map[string]string
		msg  string
	}{
		{map[string]string{"a": filepath.Join(dir, "a"), "b": filepath.Join(dir, "missing")}, "no such file"},
		{map[string]string{"a": filepath.Join(dir, "a"), "b": filepath.Join(dir, "small")}, "holds 10 bytes"},
		{map[string]string{"a": filepath.Join(dir, "a"), "b": filepath.Join(dir, "a")}, "same device as the booted slot"},
		{map[string]string{"a": filepath.Join(dir, "a"), "b": filepath.Join(dir, "b")}, "mounted on /mnt/b"},
	} {
		p := installer.Partitions{Devices: c.devs, MountInfo: mi}
		_, err := p.OpenStream("b", "a", 50, 0)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want %q", c.devs, err, c.msg)
		}
	}
	p := installer.Partitions{Devices: map[string]string{"a": filepath.Join(dir, "a"), "b": filepath.Join(dir, "small")}}
	if _, err := p.OpenStream("a", "a", 1, 0); err == nil || !strings.Contains(err.Error(), "booted slot") {
		t.Errorf("writing the booted slot: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); !bytes.Equal(b, make([]byte, 100)) {
		t.Error("a refused write touched a device")
	}
}

// TestOSImageSetToTryKeepsItsSlot: while an image is set to try at the next boot, a newer
// one (in either payload mode) is not written over it: an answer is verified only after its
// bytes arrive, and must not cancel a verified image. The newer one follows the reboot.
func TestOSImageSetToTryKeepsItsSlot(t *testing.T) {
	for _, mode := range []string{"full", "metadata"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, testserver.Options{})
			rig := newBootRig(t, e.dir, "grub")
			cfg := e.config(rig.yaml())
			cfg.Server.Payload = mode
			if _, err := e.check(cfg); err != nil {
				t.Fatal(err)
			}
			v1 := rig.partition("b", 8192)
			e.release("os_armv8", "prod", "1.2.0", bytes.Repeat([]byte("v2"), 3000), 50)
			if _, err := e.check(cfg); err != nil {
				t.Fatalf("check while an image waits for its reboot: %v", err)
			}
			if v := rig.vars(); v["ota_slot"] != "b" || v["upgrade_available"] != "1" {
				t.Fatalf("the image set to try was cancelled: env %v", v)
			}
			if !bytes.Equal(rig.partition("b", 8192), v1) {
				t.Fatal("slot b, set to try, was written over")
			}
			rig.boot(1) // b boots; mark-good; then the newer image goes to a
			a := e.agent(cfg)
			db, _ := a.openRecovered(context.Background())
			if err := a.MarkGood(db); err != nil {
				t.Fatal(err)
			}
			a.Close()
			if _, err := e.check(cfg); err != nil {
				t.Fatal(err)
			}
			if v := rig.vars(); v["ota_slot"] != "a" || v["upgrade_available"] != "1" {
				t.Fatalf("the newer image did not follow the reboot: env %v", v)
			}
		})
	}
}
