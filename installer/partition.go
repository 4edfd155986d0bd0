package installer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Partitions are the OS's A/B partitions (block devices, or regular files in tests) and the
// bootloader environment that says which one to boot.
type Partitions struct {
	Devices   map[string]string // slot → device path
	Env       BootEnv
	MountInfo string // default /proc/self/mountinfo
}

// Booted is the slot the bootloader environment names (a when unset: a fresh image).
func (p Partitions) Booted(env map[string]string) string {
	if s := env[VarSlot]; s == SlotA || s == SlotB {
		return s
	}
	return SlotA
}

// CheckTarget refuses, before any byte is written, a device that is missing, the booted
// one, mounted, or smaller than size.
func (p Partitions) CheckTarget(slot, booted string, size int64) error {
	dev, ok := p.Devices[slot]
	if !ok || dev == "" {
		return fmt.Errorf("slots.os.devices.%s is not configured", slot)
	}
	if slot == booted {
		return fmt.Errorf("refusing to write %s: it is the booted slot %s", dev, slot)
	}
	if other := p.Devices[booted]; other != "" && sameFile(dev, other) {
		return fmt.Errorf("refusing to write %s: it is the same device as the booted slot %s (%s)", dev, booted, other)
	}
	fi, err := os.Stat(dev)
	if err != nil {
		return fmt.Errorf("OS partition for slot %s: %w", slot, err)
	}
	if mounted, where, _ := p.mounted(dev, fi); mounted {
		return fmt.Errorf("refusing to write %s: it is mounted on %s", dev, where)
	}
	have, err := deviceSize(dev, fi)
	if err != nil {
		return err
	}
	if have < size {
		return fmt.Errorf("OS partition %s holds %d bytes, the image needs %d", dev, have, size)
	}
	return nil
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

func deviceSize(dev string, fi os.FileInfo) (int64, error) {
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// MountedRW says where slot's device is mounted read-write, if it is: such a filesystem
// changes its own bytes (superblock, journal, files), so they no longer hash as the image.
func (p Partitions) MountedRW(slot string) (string, bool) {
	dev := p.Devices[slot]
	fi, err := os.Stat(dev)
	if err != nil {
		return "", false
	}
	mounted, where, rw := p.mounted(dev, fi)
	return where, mounted && rw
}

// mounted looks the device up in mountinfo: by device number for block devices, by path
// for anything else; rw when any of its mounts is read-write.
func (p Partitions) mounted(dev string, fi os.FileInfo) (found bool, where string, rw bool) {
	mi := p.MountInfo
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	f, err := os.Open(mi)
	if err != nil {
		return false, "", false
	}
	defer f.Close()
	var majmin string
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode()&os.ModeDevice != 0 {
		majmin = fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	}
	abs, _ := filepath.EvalSymlinks(dev)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		sep := 6
		for sep < len(fields) && fields[sep] != "-" {
			sep++
		}
		if sep+2 >= len(fields) {
			continue
		}
		source := fields[sep+2]
		if (majmin != "" && fields[2] == majmin) || source == dev || (abs != "" && source == abs) {
			if !found {
				found, where = true, fields[4]
			}
			if slices.Contains(strings.Split(fields[5], ","), "rw") {
				found, where, rw = true, fields[4], true
			}
		}
	}
	return found, where, rw
}

// Write copies the image (size bytes of img, a file already verified) into slot's device,
// fsyncs it, drops the device's cached pages and reads it back from the medium, comparing it
// byte for byte with img, before anything points at it: a device that does not keep what it
// was given fails the install. Comparing costs far less than hashing again (on a TCG arm64
// board a second SHA-256 of the image was a third of the install). The booted slot's device
// is never opened for writing.
func (p Partitions) Write(slot, booted string, img io.ReaderAt, size int64) error {
	if err := p.CheckTarget(slot, booted, size); err != nil {
		return err
	}
	dev := p.Devices[slot]
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(f, io.NewSectionReader(img, 0, size), buf)
	if err == nil && n != size {
		err = fmt.Errorf("image is %d bytes, expected %d", n, size)
	}
	if err == nil {
		err = f.Sync() // a failed fsync fails the install (no retry)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", dev, err)
	}
	rf, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer rf.Close()
	// Written and synced, the cached pages are clean: dropped, the read comes from the medium.
	unix.Fadvise(int(rf.Fd()), 0, size, unix.FADV_DONTNEED)
	if err := sameBytes(rf, img, size, buf); err != nil {
		return fmt.Errorf("read back %s: %w", dev, err)
	}
	return nil
}

// sameBytes compares size bytes of r with img, len(buf) at a time.
func sameBytes(r io.Reader, img io.ReaderAt, size int64, buf []byte) error {
	want := make([]byte, len(buf))
	for off := int64(0); off < size; {
		n := int(min(int64(len(buf)), size-off))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return err
		}
		if _, err := img.ReadAt(want[:n], off); err != nil && !(err == io.EOF && off+int64(n) == size) {
			return fmt.Errorf("the image: %w", err)
		}
		if !bytes.Equal(buf[:n], want[:n]) {
			i := 0
			for buf[i] == want[i] {
				i++
			}
			return fmt.Errorf("byte %d differs from the image written", off+int64(i))
		}
		off += int64(n)
	}
	return nil
}

// SetTry tells the bootloader to try slot once: one atomic write of the three variables.
func (p Partitions) SetTry(slot string) error {
	return p.Env.Write(map[string]string{VarSlot: slot, VarUpgrade: "1", VarBootcount: "0"})
}

// MarkGood ends the trial: the booted slot stays.
func (p Partitions) MarkGood() error {
	return p.Env.Write(map[string]string{VarUpgrade: "0", VarBootcount: "0"})
}
