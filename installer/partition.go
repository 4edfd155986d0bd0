package installer

import (
	"bufio"
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

// SetTry tells the bootloader to try slot once: one atomic write of the three variables.
func (p Partitions) SetTry(slot string) error {
	return p.Env.Write(map[string]string{VarSlot: slot, VarUpgrade: "1", VarBootcount: "0"})
}

// MarkGood ends the trial: the booted slot stays.
func (p Partitions) MarkGood() error {
	return p.Env.Write(map[string]string{VarUpgrade: "0", VarBootcount: "0"})
}
