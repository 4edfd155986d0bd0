package installer

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/packaging"
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

// A stream cut after a flush and reopened at that offset writes the same slot as an
// unbroken one; the read-back hashes what the medium holds (a slot changed after the write
// hashes to something else, a short one is named). It never writes past the image, the
// booted slot, or a short device.
func TestStreamResumesAndReadsBack(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, make([]byte, 3<<20), 0o644)
	os.WriteFile(b, make([]byte, 3<<20), 0o644)
	p := Partitions{Devices: map[string]string{"a": a, "b": b}, MountInfo: filepath.Join(dir, "none")}
	img := bytes.Repeat([]byte("0123456789"), (2<<20+5)/10)
	size := int64(len(img))
	want, _ := packaging.DigestReader(bytes.NewReader(img))
	s, err := p.OpenStream("b", "a", size, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(img[:1<<20])
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	off := s.Offset()
	s.Write(bytes.Repeat([]byte{'x'}, 1000)) // after the checkpoint: never trusted
	s.Abort()
	if s, err = p.OpenStream("b", "a", size, off); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(img[off:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte{1}); err == nil || !strings.Contains(err.Error(), "more than the image's") {
		t.Errorf("a byte past the image: %v", err)
	}
	if _, err := s.Fill(bytes.NewReader([]byte{1})); err == nil || !strings.Contains(err.Error(), "more than the image's") {
		t.Errorf("a byte past the image, filled: %v", err)
	}
	if n, err := s.Fill(bytes.NewReader(nil)); n != 0 || err != io.EOF {
		t.Errorf("the end of a whole image: %d, %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(b); !bytes.Equal(got[:len(img)], img) {
		t.Fatal("slot b does not hold the image")
	}
	for _, withMD5 := range []bool{false, true} {
		got, err := p.ReadBack("b", size, withMD5)
		if w := want; err != nil || !withMD5 && got != (packaging.Digests{SHA256: w.SHA256, Size: w.Size}) || withMD5 && got != w {
			t.Fatalf("read back (md5 %v): %+v, %v; want %+v", withMD5, got, err, w)
		}
	}
	h, err := p.OpenHasher("b", true) // in steps behind a writer, at any offsets
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{5, 123457, 123457, 1<<20 + 5, size - 3} {
		if err := h.HashTo(n, false); err != nil || h.Offset() > n {
			t.Fatalf("hash to %d: %v (hashed %d)", n, err, h.Offset())
		}
	}
	if err := h.HashTo(size, true); err != nil {
		t.Fatal(err)
	}
	if got := h.Close(); got != want {
		t.Fatalf("hashed in steps: %+v, want %+v", got, want)
	}
	f, _ := os.OpenFile(b, os.O_WRONLY, 0)
	f.WriteAt([]byte{'!'}, 1234567)
	f.Close()
	if got, err := p.ReadBack("b", size, false); err != nil || got.SHA256 == want.SHA256 {
		t.Errorf("a slot that differs from what was written hashed to the image's SHA-256 (%v)", err)
	}
	if _, err := p.ReadBack("b", 4<<20, false); err == nil || !strings.Contains(err.Error(), "3145728 bytes, the image has 4194304") {
		t.Errorf("a slot shorter than the image: %v", err)
	}
	if _, err := p.OpenStream("a", "a", size, 0); err == nil || !strings.Contains(err.Error(), "booted slot") {
		t.Errorf("the booted slot opened for writing: %v", err)
	}
	if _, err := p.OpenStream("b", "a", 4<<20, 0); err == nil || !strings.Contains(err.Error(), "holds 3145728 bytes") {
		t.Errorf("a device too small: %v", err)
	}
}
