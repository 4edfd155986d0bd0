// Package atomicfile replaces a file so that a reader (or a power cut) sees the old content
// or the new, never a mix: the new bytes go to a temporary file beside it, which is
// fsync'd, renamed over the name, and the directory fsync'd. Every write goes through an
// os.Root, so a name never resolves outside its directory.
package atomicfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteIn replaces name under root with what fill writes. The temporary file is
// "<name>.tmp"; it is removed when anything fails.
func WriteIn(root *os.Root, name string, perm os.FileMode, fill func(io.Writer) error) error {
	tmp := name + ".tmp"
	root.Remove(tmp) // a leftover of a crash (or a link someone planted: never written through)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Chmod(perm) // the umask does not decide a key's mode
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Join(root.Name(), name), err)
	}
	return SyncDir(root, filepath.Dir(name))
}

// SyncDir fsyncs the directory dir under root, so the entries renamed into it survive a
// power cut.
func SyncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Join(root.Name(), dir), err)
	}
	return nil
}

// WriteFunc replaces the file at path (host-side tools: a catalog, a key, a bundle).
func WriteFunc(path string, perm os.FileMode, fill func(io.Writer) error) error {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer root.Close()
	return WriteIn(root, filepath.Base(path), perm, fill)
}

// Write replaces the file at path with data.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(data))
		return err
	})
}
