package delivery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/packaging"
)

// CheckSpace refuses, before a byte is fetched, a metadata-mode update whose downloads cannot
// fit in the state directory's filesystem (a partial download already there counts as had).
// A download that fills the disk would otherwise fail late and leave the disk full.
func (a *Fetcher) CheckSpace(plan *Plan, entries map[string]packaging.Entry) error {
	root, err := a.slots.Root()
	if err != nil {
		return err
	}
	var need int64
	for _, item := range plan.Download {
		n := entries[item.App].Size
		if err := a.fileSizeOK(item.Member(), n); err != nil {
			return err
		}
		if fi, err := root.Lstat("downloads/" + item.Member()); err == nil && fi.Mode().IsRegular() {
			n -= fi.Size()
		}
		need += max(n, 0)
	}
	return a.needSpace(need, "this update")
}

// fileSizeOK refuses a binary larger than install.max_file_size before a byte of it is
// fetched or written.
func (a *Fetcher) fileSizeOK(member string, size int64) error {
	if limit := int64(a.cfg.Install.MaxFileSize); limit > 0 && size > limit {
		return fmt.Errorf("%w: %s is %s, over install.max_file_size (%s): raise the limit if it is right", fault.ErrRejected, member, protocol.HumanBytes(size), protocol.HumanBytes(limit))
	}
	return nil
}

// needSpace refuses, before a byte is fetched, what cannot fit in the state directory's
// filesystem with the margin, naming both figures.
func (a *Fetcher) needSpace(need int64, what string) error {
	if need <= 0 {
		return nil
	}
	have, err := freeBytes(a.slots.Dir)
	if err != nil {
		return fmt.Errorf("free space of %s: %w", a.slots.Dir, err)
	}
	// install.space_margin stays free beyond what an update needs: bbolt, manifests, logs.
	if margin := int64(a.cfg.Install.SpaceMargin); need+margin > have {
		return fmt.Errorf("not enough space for %s: need %s (+%s margin, install.space_margin), have %s free on %s (the filesystem of %s); free space there or give the state directory a larger partition",
			what, protocol.HumanBytes(need), protocol.HumanBytes(margin), protocol.HumanBytes(have), mountOf(a.slots.Dir), a.slots.Dir)
	}
	return nil
}

// mountOf is the mount point dir lies on: the last directory up the tree on the same device.
func mountOf(dir string) string {
	var st syscall.Stat_t
	if syscall.Stat(dir, &st) != nil {
		return dir
	}
	for {
		parent := filepath.Dir(dir)
		var ps syscall.Stat_t
		if parent == dir || syscall.Stat(parent, &ps) != nil || ps.Dev != st.Dev {
			return dir
		}
		dir = parent
	}
}

func freeBytes(dir string) (int64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return int64(fs.Bavail) * int64(fs.Bsize), nil
}

// localError tells a full or failing local disk from a network or server fault, so the
// error names the device's own problem instead of blaming the server.
func localError(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		figures := ""
		var pe *os.PathError
		if errors.As(err, &pe) {
			if have, ferr := freeBytes(filepath.Dir(pe.Path)); ferr == nil {
				figures = fmt.Sprintf(" (%s free now)", protocol.HumanBytes(have))
			}
		}
		return fmt.Errorf("%s: %v: the state directory's filesystem is full%s; free space there or give it a larger partition", what, err, figures)
	}
	if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%s: %v: the state directory's storage failed", what, err)
	}
	return nil
}

// netError classes a failed transfer that writes to the disk: the disk's own trouble first
// (localError), else as protocol.NetError does.
func netError(what string, err error) error {
	if le := localError(what, err); le != nil {
		return le
	}
	return protocol.NetError(what, err)
}
