package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDir takes an exclusive flock on lock in the state directory (released when the process
// dies, so a crash never leaves it stale) and writes the holder's pid into it for the error
// message. A link at its name is never written through: it is refused.
func lockDir(root *os.Root) (func(), error) {
	path := filepath.Join(root.Name(), "lock")
	if fi, err := root.Lstat("lock"); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s); remove it", path, fi.Mode().Type())
	}
	f, err := root.OpenFile("lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file; remove it", path)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		raw := make([]byte, 32)
		n, _ := f.ReadAt(raw, 0)
		f.Close()
		pid := strings.TrimSpace(string(raw[:n]))
		return nil, fmt.Errorf("%w: %s is locked by pid %s (stop that one, or send it SIGUSR1 to check now)", ErrBusy, root.Name(), pid)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
