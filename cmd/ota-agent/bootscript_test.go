package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The U-Boot environment as libubootenv writes a redundant pair: 0x4000 bytes each,
// [CRC-32 of the data][flag][data].
const envSize = 0x4000

func envCopy(flag byte, vars string) []byte {
	b := make([]byte, envSize)
	data := b[5:]
	copy(data, strings.ReplaceAll(vars, " ", "\x00")+"\x00")
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(data))
	b[4] = flag
	return b
}

// readCopy says whether a copy is whole (its CRC holds), its flag and its variables.
func readCopy(b []byte) (ok bool, flag byte, vars map[string]string) {
	if len(b) != envSize || binary.LittleEndian.Uint32(b) != crc32.ChecksumIEEE(b[5:]) {
		return false, 0, nil
	}
	vars = map[string]string{}
	for _, kv := range bytes.Split(b[5:], []byte{0}) {
		if len(kv) == 0 {
			break // the end: what follows the double NUL is an older write's
		}
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			vars[k] = v
		}
	}
	return true, b[4], vars
}

// bootBoard is a disk with the boot partition (boot.scr and the environment files) and two
// empty root partitions: U-Boot runs the script, which names the slot it boots, finds no
// kernel there and resets; QEMU (-no-reboot) exits. The environment is read back after.
type bootBoard struct {
	t    *testing.T
	dir  string
	arch string // arm64 | arm
	env  map[string][]byte
}

func newBootBoard(t *testing.T, arch string) *bootBoard {
	for _, tool := range []string{"mkimage", "mkfs.vfat", "mcopy", "sfdisk", qemuFor(arch)} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: the boot script under U-Boot needs %s (apt-get install u-boot-tools dosfstools mtools fdisk qemu-system-arm)", tool)
		}
	}
	if _, err := os.Stat(ubootFor(arch)); err != nil {
		t.Skipf("SKIPPED: no %s (apt-get install u-boot-qemu)", ubootFor(arch))
	}
	// Not t.TempDir: QEMU's -drive takes a comma in a subtest's name for an option.
	dir, err := os.MkdirTemp("", "ota-bootscript-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &bootBoard{t: t, dir: dir, arch: arch, env: map[string][]byte{}}
}

func qemuFor(arch string) string {
	if arch == "arm" {
		return "qemu-system-arm"
	}
	return "qemu-system-aarch64"
}

func ubootFor(arch string) string { return "/usr/lib/u-boot/qemu_" + arch + "/u-boot.bin" }

func (b *bootBoard) run(name string, args ...string) {
	b.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = b.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// boot writes the environment files, boots U-Boot once and returns the script's lines; the
// files U-Boot left are read back into b.env.
func (b *bootBoard) boot() []string {
	b.t.Helper()
	boot, disk := filepath.Join(b.dir, "boot.img"), filepath.Join(b.dir, "disk.img")
	os.Remove(boot)
	b.run("mkimage", "-q", "-A", b.arch, "-O", "linux", "-T", "script", "-C", "none", "-d", abs(b.t, "../../dist/bootloader/boot.cmd"), "boot.scr")
	b.run("mkfs.vfat", "-C", boot, "8192")
	files := []string{"boot.scr"}
	for name, data := range b.env {
		os.WriteFile(filepath.Join(b.dir, name), data, 0o644)
		files = append(files, name)
	}
	b.run("mcopy", append([]string{"-i", boot}, append(files, "::")...)...)
	os.Remove(disk)
	b.run("truncate", "-s", "16M", disk)
	layout := "label: dos\nstart=2048, size=16384, type=c\nstart=18432, size=4096, type=83\nstart=22528, size=4096, type=83\n"
	cmd := exec.Command("sfdisk", "-q", disk)
	cmd.Stdin = strings.NewReader(layout)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("sfdisk: %v: %s", err, out)
	}
	b.run("dd", "if="+boot, "of="+disk, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	serial := filepath.Join(b.dir, "serial.log")
	os.Remove(serial)
	cpu := "cortex-a57"
	if b.arch == "arm" {
		cpu = "cortex-a15"
	}
	b.run("timeout", "120", qemuFor(b.arch), "-M", "virt", "-cpu", cpu, "-bios", ubootFor(b.arch), "-m", "512",
		"-drive", "if=virtio,file="+disk+",format=raw", "-nic", "none", "-display", "none", "-monitor", "none",
		"-serial", "file:"+serial, "-no-reboot")
	// What U-Boot left on the boot partition.
	b.run("dd", "if="+disk, "of="+boot, "bs=1M", "skip=1", "count=8", "status=none")
	for name := range b.env {
		out := filepath.Join(b.dir, "out-"+name)
		b.run("mcopy", "-o", "-i", boot, "::"+name, out)
		b.env[name], _ = os.ReadFile(out)
	}
	raw, _ := os.ReadFile(serial)
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(raw), "\r", ""), "\n") {
		if strings.HasPrefix(l, "OTA-UBOOT: ") {
			lines = append(lines, strings.TrimPrefix(l, "OTA-UBOOT: "))
		}
	}
	if len(lines) == 0 {
		b.t.Fatalf("the boot script printed nothing:\n%s", raw)
	}
	return lines
}

func abs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// booted is the slot the script booted.
func booted(lines []string) string {
	for _, l := range lines {
		if s, ok := strings.CutPrefix(l, "booting slot "); ok {
			return s[:1]
		}
	}
	return ""
}

// current is the copy libubootenv reads next (the whole one, the higher flag, 0 after 255)
// and its variables, cross-checked with fw_printenv when it is installed.
func (b *bootBoard) current() (string, map[string]string) {
	b.t.Helper()
	okA, flagA, varsA := readCopy(b.env["uboot.env"])
	okB, flagB, varsB := readCopy(b.env["uboot-redund.env"])
	use, vars := "none", map[string]string{}
	newerB := (flagA == 0xff && flagB == 0) || (flagB > flagA && !(flagB == 0xff && flagA == 0))
	switch {
	case okB && (!okA || newerB):
		use, vars = "b", varsB
	case okA:
		use, vars = "a", varsA
	}
	if _, err := exec.LookPath("fw_printenv"); err == nil && use != "none" {
		cfg := filepath.Join(b.dir, "fw_env.config")
		os.WriteFile(cfg, []byte(fmt.Sprintf("%s 0x0 0x4000\n%s 0x0 0x4000\n",
			filepath.Join(b.dir, "out-uboot.env"), filepath.Join(b.dir, "out-uboot-redund.env"))), 0o644)
		out, err := exec.Command("fw_printenv", "-c", cfg).Output()
		if err != nil {
			b.t.Fatalf("fw_printenv: %v", err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if k, v, _ := strings.Cut(l, "="); vars[k] != v {
				b.t.Errorf("fw_printenv reads %s=%s, the copy %s has %q", k, v, use, vars[k])
			}
		}
	}
	return use, vars
}

const (
	onA    = "ota_slot=a upgrade_available=0 bootcount=0 bootlimit=1"
	tryB   = "ota_slot=b upgrade_available=1 bootcount=0 bootlimit=1"
	tryB2  = "ota_slot=b upgrade_available=1 bootcount=0 bootlimit=2"
	onB    = "ota_slot=b upgrade_available=0 bootcount=0 bootlimit=1"
	envFmt = "ota_slot=%s upgrade_available=%s bootcount=%s"
)

func envLine(v map[string]string) string {
	return fmt.Sprintf(envFmt, v["ota_slot"], v["upgrade_available"], v["bootcount"])
}

// TestBootScriptPicksTheWholeNewerEnvironment boots dist/bootloader/boot.cmd under Debian's
// U-Boot with the environment copies a power cut can leave: the copy whose CRC holds is
// used, the newer flag when both hold (0 after 255), and U-Boot writes the other copy.
func TestBootScriptPicksTheWholeNewerEnvironment(t *testing.T) {
	torn := func(b []byte) []byte { b = slices.Clone(b); b[100] ^= 0xff; return b }
	// fw_setenv writes a copy in place: a cut can leave its CRC and flag new, its data old.
	partly := func(newer, older []byte) []byte { return append(slices.Clone(newer[:12]), older[12:]...) }
	cases := []struct {
		name       string
		arch       string
		a, b       []byte
		slot       string // booted
		use        string // copy libubootenv reads after
		afterSlots string // its variables
	}{
		{"fresh image: both copies alike", "arm64", envCopy(1, onA), envCopy(1, onA), "a", "a", "ota_slot=a upgrade_available=0 bootcount=0"},
		{"newer copy asks to try b: counted in the other copy", "arm64", envCopy(2, onA), envCopy(3, tryB), "b", "a", "ota_slot=b upgrade_available=1 bootcount=1"},
		{"newer copy torn by a cut: the older one holds", "arm64", envCopy(2, onA), torn(envCopy(3, tryB)), "a", "a", "ota_slot=a upgrade_available=0 bootcount=0"},
		{"newer copy written only in part: the older one holds", "arm64", partly(envCopy(5, tryB), envCopy(3, onA)), envCopy(4, onA), "a", "b", "ota_slot=a upgrade_available=0 bootcount=0"},
		{"flag 0 after 255 is newer", "arm64", envCopy(255, onA), envCopy(0, onB), "b", "b", "ota_slot=b upgrade_available=0 bootcount=0"},
		{"flag 255 before 0 is older", "arm64", envCopy(0, onB), envCopy(255, onA), "b", "a", "ota_slot=b upgrade_available=0 bootcount=0"},
		{"armv7 U-Boot: newer copy asks to try b", "arm", envCopy(7, onA), envCopy(8, tryB), "b", "a", "ota_slot=b upgrade_available=1 bootcount=1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := newBootBoard(t, c.arch)
			b.env["uboot.env"], b.env["uboot-redund.env"] = c.a, c.b
			lines := b.boot()
			if got := booted(lines); got != c.slot {
				t.Errorf("booted slot %q, want %s:\n%s", got, c.slot, strings.Join(lines, "\n"))
			}
			use, vars := b.current()
			if use != c.use || envLine(vars) != c.afterSlots {
				t.Errorf("after the boot the environment is copy %s %s, want copy %s %s:\n%s", use, envLine(vars), c.use, c.afterSlots, strings.Join(lines, "\n"))
			}
		})
	}
}

// TestBootScriptCountsACutOnce: a power cut during the first boot of the slot on trial
// costs that trial one boot, never more; a cut during U-Boot's own write of the count
// costs none (the copy it was writing is torn, the other still holds the count before).
func TestBootScriptCountsACutOnce(t *testing.T) {
	b := newBootBoard(t, "arm64")
	b.env["uboot.env"], b.env["uboot-redund.env"] = envCopy(1, onA), envCopy(2, tryB2)
	step := func(what, slot, want string) {
		t.Helper()
		lines := b.boot()
		_, vars := b.current()
		if booted(lines) != slot || envLine(vars) != want {
			t.Fatalf("%s: booted %q with %s, want %s with %s:\n%s", what, booted(lines), envLine(vars), slot, want, strings.Join(lines, "\n"))
		}
	}
	step("first boot of the trial, then a cut", "b", "ota_slot=b upgrade_available=1 bootcount=1")
	// The write of bootcount=2 is torn by a cut: the copy holding bootcount=1 still wins.
	b.boot()
	use, _ := b.current()
	written := map[string]string{"a": "uboot.env", "b": "uboot-redund.env"}[use]
	b.env[written] = slices.Clone(b.env[written])
	b.env[written][200] ^= 0xff
	step("the count's write torn, then a cut", "b", "ota_slot=b upgrade_available=1 bootcount=2")
	step("the third boot passes bootlimit 2: fallback", "a", "ota_slot=a upgrade_available=0 bootcount=0")
}
