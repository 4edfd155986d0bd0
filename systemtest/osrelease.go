//go:build system

package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// osImage builds an OS release from the staged rootfs: /etc/ota-os-version says which, and
// mutate makes a bad one. The tree is restored afterwards.
func (r *rig) osImage(version string, mutate func(tree string) func()) string {
	r.t.Helper()
	start := time.Now()
	os.WriteFile(filepath.Join(r.tree, "etc/ota-os-version"), []byte(version+"\n"), 0o644)
	undo := func() {}
	if mutate != nil {
		undo = mutate(r.tree)
	}
	rel := "blobs/os_" + r.cpu + "_" + version
	out := filepath.Join(r.work, "catalog", rel)
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-L", "root", "-d", r.tree, out, strconv.Itoa(r.rootMB)+"M")
	if b, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("mkfs.ext4 for OS %s: %v: %s", version, err, b)
	}
	undo()
	os.WriteFile(filepath.Join(r.tree, "etc/ota-os-version"), []byte("1\n"), 0o644)
	r.logf("  built OS image %s (%d MiB) in %s", version, r.rootMB, since(start))
	return rel
}

// noInitImage is an OS release that never reaches userspace: the staged tree's kernel and
// initramfs, and an /sbin/init that exits at once (the kernel panics; panic=5 resets the
// board). Nothing else is in it, so it costs the board a small download, not a whole root.
func (r *rig) noInitImage(version string) string {
	r.t.Helper()
	start := time.Now()
	tiny := filepath.Join(r.work, "noinit-tree")
	os.RemoveAll(tiny)
	for _, d := range []string{"boot", "dev", "proc", "sys", "run", "tmp", "etc", "usr/sbin", "usr/bin", "usr/lib"} {
		os.MkdirAll(filepath.Join(tiny, d), 0o755)
	}
	for _, l := range []string{"bin", "sbin", "lib"} {
		os.Symlink("usr/"+l, filepath.Join(tiny, l))
	}
	os.Symlink("/bin/false", filepath.Join(tiny, "usr/sbin/init"))
	os.WriteFile(filepath.Join(tiny, "etc/ota-os-version"), []byte(version+"\n"), 0o644)
	// /bin/false and what loads it; the kernel and initramfs the boot script loads.
	var keep []string
	for _, g := range []string{"usr/bin/false", "usr/lib/ld-linux*", "usr/lib/*-linux-gnu/libc.so.6", "usr/lib/*-linux-gnu/ld-linux*", "boot/Image", "boot/zImage", "boot/initrd.img"} {
		m, _ := filepath.Glob(filepath.Join(r.tree, g))
		keep = append(keep, m...)
	}
	for _, src := range keep {
		dst := filepath.Join(tiny, strings.TrimPrefix(src, r.tree))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if b, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
			r.t.Fatalf("cp %s: %v: %s", src, err, b)
		}
	}
	du, err := exec.Command("du", "-sm", tiny).Output()
	if err != nil {
		r.t.Fatalf("du: %v", err)
	}
	used, _ := strconv.Atoi(strings.Fields(string(du))[0])
	mb := used + used/8 + 32
	rel := "blobs/os_" + r.cpu + "_" + version
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-L", "root", "-d", tiny, filepath.Join(r.work, "catalog", rel), strconv.Itoa(mb)+"M")
	if b, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("mkfs.ext4 for OS %s: %v: %s", version, err, b)
	}
	r.logf("  built OS image %s (%d MiB: kernel, initramfs, an init that exits) in %s", version, mb, since(start))
	return rel
}

func (r *rig) publishOS(version string, mutate func(string) func()) {
	rel := r.osImage(version, mutate)
	r.publish("os_"+r.cpu, version, rel, false)
	r.osVer = version
}
