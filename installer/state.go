package installer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
)

// Opening the state directory: one os.Root for every file operation under it, and a tidy-up
// of anything planted at the agent's own names.

// errNotOpen: a programming error, a Slots used before OpenState.
var errNotOpen = errors.New("state directory is not open")

// OpenState opens the state directory dir. sysroot is "" or the image root dir lies in: dir
// is then resolved inside it, so an absolute link in the image never leads to the build host.
// With create, the directory and its layout are made first, and anything planted at one of
// the agent's own names (a link where a directory or file belongs, a file where a directory
// belongs) is removed and reported through removed; without it, nothing is written and a
// missing directory is os.ErrNotExist.
func OpenState(sysroot, dir string, create bool, removed func(path, was string)) (Slots, error) {
	l := Slots{Dir: dir}
	var err error
	if sysroot == "" {
		if create {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return l, err
			}
		}
		l.root, err = os.OpenRoot(dir)
	} else {
		l.root, err = openInside(sysroot, dir, create)
	}
	if err != nil {
		return l, fmt.Errorf("state_dir %s: %w", dir, err)
	}
	if create {
		if err := l.tidy(removed); err != nil {
			l.root.Close()
			return l, err
		}
	}
	return l, nil
}

// openInside opens dir (a path under sysroot) without leaving sysroot.
func openInside(sysroot, dir string, create bool) (*os.Root, error) {
	sr, err := os.OpenRoot(sysroot)
	if err != nil {
		return nil, err
	}
	defer sr.Close()
	rel, err := filepath.Rel(sysroot, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("not inside the root %s", sysroot)
	}
	if create {
		if err := sr.MkdirAll(rel, 0o755); err != nil {
			return nil, err
		}
	}
	return sr.OpenRoot(rel)
}

// layout is what the agent keeps in a state directory, by kind.
var layout = []struct {
	name string
	dir  bool
}{
	{"slots", true}, {"slots/a", true}, {"slots/b", true}, {"downloads", true},
	{"lock", false}, {"agent.db", false},
}

// tidy removes whatever sits at one of the agent's names and is not what the agent puts
// there (a planted link, a file for a directory), then makes slots/ and downloads/. The
// directory is synced when it changed (a check that finds it in order syncs nothing).
func (l Slots) tidy(removed func(path, was string)) error {
	changed := false
	for _, e := range layout {
		fi, err := l.root.Lstat(e.name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(l.Dir, e.name), err)
		}
		if ok := fi.IsDir() == e.dir && (e.dir || fi.Mode().IsRegular()); ok {
			continue
		}
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory where the agent keeps a file; move it away", filepath.Join(l.Dir, e.name))
		}
		if err := l.root.Remove(e.name); err != nil {
			return fmt.Errorf("remove %s (%s): %w", filepath.Join(l.Dir, e.name), kind(fi), err)
		}
		changed = true
		if removed != nil {
			removed(filepath.Join(l.Dir, e.name), kind(fi))
		}
	}
	for _, d := range []string{"slots", "downloads"} {
		if err := l.root.Mkdir(d, 0o755); err == nil {
			changed = true
		} else if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w", filepath.Join(l.Dir, d), err)
		}
	}
	// A link planted inside downloads/ would make a resume write through it.
	entries, err := l.readDir("downloads")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			name := "downloads/" + e.Name()
			if err := l.root.RemoveAll(name); err != nil {
				return fmt.Errorf("remove %s: %w", filepath.Join(l.Dir, name), err)
			}
			if removed != nil {
				removed(filepath.Join(l.Dir, name), "not a regular file")
			}
		}
	}
	if !changed {
		return nil
	}
	return l.SyncDir(".")
}

func kind(fi os.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t&os.ModeSymlink != 0:
		return "a symbolic link"
	case t.IsRegular():
		return "a file"
	case t.IsDir():
		return "a directory"
	default:
		return "a " + t.String() + " file"
	}
}

// Open tells whether OpenState succeeded.
func (l Slots) Open() bool { return l.root != nil }

// Close releases the directory.
func (l Slots) Close() error {
	if l.root == nil {
		return nil
	}
	return l.root.Close()
}

// Root is the open state directory, for the agent's own files (downloads, lock, database).
func (l Slots) Root() (*os.Root, error) {
	if l.root == nil {
		return nil, errNotOpen
	}
	return l.root, nil
}

// readDir lists a directory under the state directory without following a link.
func (l Slots) readDir(name string) ([]os.DirEntry, error) {
	if l.root == nil {
		return nil, errNotOpen
	}
	return readDir(l.root, name)
}

func readDir(root *os.Root, name string) ([]os.DirEntry, error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is %s, not a directory", filepath.Join(root.Name(), name), kind(fi))
	}
	d, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// SyncDir fsyncs a directory under the state directory ("." for the state directory).
func (l Slots) SyncDir(name string) error {
	if l.root == nil {
		return errNotOpen
	}
	return atomicfile.SyncDir(l.root, name)
}
