package installer

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// changingImage returns other bytes the second time a range is read: what a device that does
// not keep what it was given looks like to the read-back (the copy reads each range once).
type changingImage struct {
	data []byte
	seen map[int64]bool
}

func (c *changingImage) ReadAt(p []byte, off int64) (int, error) {
	n := copy(p, c.data[off:])
	if c.seen[off] {
		p[n/2] ^= 0xff
	}
	c.seen[off] = true
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Write reads the slot back and compares it with the image: equal passes, a difference fails
// the install and names the byte.
func TestWriteReadsBack(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, make([]byte, 3<<20), 0o644)
	os.WriteFile(b, make([]byte, 3<<20), 0o644)
	p := Partitions{Devices: map[string]string{"a": a, "b": b}, MountInfo: filepath.Join(dir, "none")}
	img := bytes.Repeat([]byte("0123456789"), (2<<20+5)/10)
	if err := p.Write("b", "a", bytes.NewReader(img), int64(len(img))); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got, _ := os.ReadFile(b); !bytes.Equal(got[:len(img)], img) {
		t.Fatal("slot b does not hold the image")
	}
	err := p.Write("b", "a", &changingImage{data: img, seen: map[int64]bool{}}, int64(len(img)))
	if err == nil || !strings.Contains(err.Error(), "read back "+b+": byte 524288 differs") {
		t.Fatalf("a slot that differs from the image: %v", err)
	}
}
