package installer

import (
	"os"
	"path/filepath"
	"testing"
)

// MountedRW: a root mounted read-write is told apart from a read-only one (whose bytes still
// hash as the image) and from a device that is not mounted.
func TestMountedRW(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "vda3")
	os.WriteFile(dev, make([]byte, 4096), 0o644)
	mi := filepath.Join(dir, "mountinfo")
	p := Partitions{Devices: map[string]string{"b": dev, "a": filepath.Join(dir, "vda2")}, MountInfo: mi}
	for _, c := range []struct {
		line  string
		rw    bool
		where string
	}{
		{"22 1 254:3 / / rw,relatime shared:1 - ext4 " + dev + " rw,errors=remount-ro\n", true, "/"},
		{"22 1 254:3 / / ro,relatime shared:1 - ext4 " + dev + " ro\n", false, ""},
		{"22 1 254:3 / /mnt ro,relatime - ext4 " + dev + " ro\n23 1 254:3 / /data rw,relatime - ext4 " + dev + " rw\n", true, "/data"},
		{"22 1 254:9 / / rw,relatime - ext4 /dev/other rw\n", false, ""},
	} {
		os.WriteFile(mi, []byte(c.line), 0o644)
		where, rw := p.MountedRW("b")
		if rw != c.rw || (rw && where != c.where) {
			t.Errorf("%q: MountedRW = %q, %v; want %q, %v", c.line, where, rw, c.where, c.rw)
		}
	}
	if _, rw := p.MountedRW("a"); rw {
		t.Error("a missing device is mounted")
	}
}

// syncStorage accepts a character device that has nothing to flush (fsync gives EINVAL,
// as MTD flash does), and still syncs files and their directories.
func TestSyncStorage(t *testing.T) {
	if err := syncStorage("/dev/null"); err != nil {
		t.Errorf("/dev/null: %v", err)
	}
	f := filepath.Join(t.TempDir(), "uboot.env")
	os.WriteFile(f, make([]byte, 16), 0o644)
	if err := syncStorage(f); err != nil {
		t.Errorf("file: %v", err)
	}
	if err := syncStorage(f + ".missing"); err == nil {
		t.Error("a missing env file synced")
	}
}
