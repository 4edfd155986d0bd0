package installer

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/packaging"
)

// Staging is a fresh, empty directory beside the slot it will become.
type Staging struct {
	l    Slots
	slot string
	name string // relative to the state directory
	dir  string
	root *os.Root
	// fsyncs run in the background while the next file streams in; Seal waits for them.
	syncs   sync.WaitGroup
	syncMu  sync.Mutex
	syncErr error
}

// Stage starts building slot s: slots/<s>.tmp, emptied first.
func (l Slots) Stage(s string) (*Staging, error) {
	if l.root == nil {
		return nil, errNotOpen
	}
	name := "slots/" + s + ".tmp"
	if err := l.root.RemoveAll(name); err != nil {
		return nil, err
	}
	if err := l.root.MkdirAll(name, 0o755); err != nil {
		return nil, err
	}
	root, err := l.root.OpenRoot(name)
	if err != nil {
		return nil, err
	}
	return &Staging{l: l, slot: s, name: name, dir: filepath.Join(l.Dir, name), root: root}, nil
}

// Slot is the slot being built.
func (st *Staging) Slot() string { return st.slot }

// Dir is the staging directory.
func (st *Staging) Dir() string { return st.dir }

// WriteFile creates name (a flat name, never existing before) from r, hashing as it writes.
// Its fsync runs in the background while the caller goes on; Seal fails if any fsync failed
// (no retry: fsyncgate).
func (st *Staging) WriteFile(name string, r io.Reader) (packaging.Digests, error) {
	return st.WriteFileFor(name, r, true)
}

// WriteFileFor is WriteFile, hashing MD5 only withMD5 (packaging.NewDigesterFor).
func (st *Staging) WriteFileFor(name string, r io.Reader, withMD5 bool) (packaging.Digests, error) {
	if err := packaging.ValidFileName(name); err != nil {
		return packaging.Digests{}, err
	}
	f, err := st.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return packaging.Digests{}, err
	}
	d := packaging.NewDigesterFor(withMD5)
	buf := make([]byte, 256<<10)
	_, err = io.CopyBuffer(io.MultiWriter(f, d), r, buf)
	sum := d.Sum()
	if err != nil {
		f.Close()
		return packaging.Digests{}, fmt.Errorf("write %s: %w", name, err)
	}
	st.syncLater(f, name)
	return sum, nil
}

// syncLater fsyncs and closes f in the background; Seal waits for it.
func (st *Staging) syncLater(f *os.File, name string) {
	st.syncs.Add(1)
	go func() {
		defer st.syncs.Done()
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			st.syncMu.Lock()
			st.syncErr = cmp.Or(st.syncErr, fmt.Errorf("fsync %s: %w", name, err))
			st.syncMu.Unlock()
		}
	}()
}

// linked makes a file hard-linked into staging durable like a written one: its bytes may
// still be in the page cache (a download that just finished), and the switch must not expose
// them before they are on disk.
func (st *Staging) linked(name string) error {
	f, err := st.root.Open(name)
	if err != nil {
		return err
	}
	st.syncLater(f, name)
	return nil
}

// synced waits for the background fsyncs and reports the first failure.
func (st *Staging) synced() error {
	st.syncs.Wait()
	st.syncMu.Lock()
	defer st.syncMu.Unlock()
	return st.syncErr
}

// Rename moves a staged file to another flat name.
func (st *Staging) Rename(from, to string) error {
	if err := packaging.ValidFileName(to); err != nil {
		return err
	}
	return st.root.Rename(from, to)
}

// Adopt links a complete file from elsewhere in the state directory (a finished download,
// named relative to it) into the staging directory as name; the original stays until the
// install is done, so an interrupted install does not download it again. Without hard links
// it is copied. Either way its bytes are fsync'd before Seal returns.
func (st *Staging) Adopt(from, name string) error {
	if err := packaging.ValidFileName(name); err != nil {
		return err
	}
	return st.take(from, name)
}

// CarryOver puts the active slot's copy of app into the new slot: a hard link where the
// filesystem allows, else a copy.
func (st *Staging) CarryOver(app, fromSlot string) error {
	if err := packaging.ValidFileName(app); err != nil {
		return err
	}
	if err := st.take("slots/"+fromSlot+"/"+app, app); err != nil {
		return fmt.Errorf("carry %s over from slot %s: %w", app, fromSlot, err)
	}
	return nil
}

// take hard-links (or copies) a regular file of the state directory into staging.
func (st *Staging) take(from, name string) error {
	fi, err := st.l.root.Lstat(from)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is %s, not a regular file", filepath.Join(st.l.Dir, from), kind(fi))
	}
	if err := st.l.root.Link(from, st.name+"/"+name); err == nil {
		return st.linked(name)
	}
	in, err := st.l.root.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = st.WriteFile(name, in)
	return err
}

// Open opens a staged file for reading.
func (st *Staging) Open(name string) (*os.File, error) { return st.root.Open(name) }

// Remove deletes a staged file (e.g. a member the plan does not use).
func (st *Staging) Remove(name string) error { return st.root.Remove(name) }

// Seal writes the manifest atomically, syncs the directory, replaces the old inactive slot
// with the staging directory and syncs slots/. After Seal the slot is complete on disk.
func (st *Staging) Seal(m Manifest) error {
	if err := st.synced(); err != nil {
		return err
	}
	entries, err := readDir(st.root, ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := m.Apps[e.Name()]; !ok || !e.Type().IsRegular() {
			return fmt.Errorf("seal slot %s: %s is not an app of the manifest", st.slot, e.Name())
		}
	}
	if len(entries) != len(m.Apps) {
		return fmt.Errorf("seal slot %s: %d files for %d apps", st.slot, len(entries), len(m.Apps))
	}
	raw, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	err = atomicfile.WriteIn(st.root, ManifestName, 0o644, func(w io.Writer) error {
		_, err := w.Write(raw)
		return err
	})
	if err != nil {
		return fmt.Errorf("seal slot %s: %w", st.slot, err)
	}
	st.root.Close()
	final := "slots/" + st.slot
	if err := st.l.root.RemoveAll(final); err != nil {
		return err
	}
	if err := st.l.root.Rename(st.name, final); err != nil {
		return err
	}
	return st.l.SyncDir("slots")
}

// Abort removes the staging directory.
func (st *Staging) Abort() {
	st.syncs.Wait()
	st.root.Close()
	st.l.root.RemoveAll(st.name)
}
