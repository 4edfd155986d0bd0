// Package installer owns the A/B directory slots: a fresh staging directory per install,
// safe creation of every file, the slot manifest, the atomic switch of the `current`
// symlink, and re-verification. It never decides what to install (the agent does).
package installer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/ota-agent/ota-agent/packaging"
)

// Slot names.
const (
	SlotA = "a"
	SlotB = "b"
)

// ManifestName is the slot's own record of what it holds, written last and atomically.
const ManifestName = ".manifest.json"

// Manifest describes a sealed slot.
type Manifest struct {
	Generation int64          `json:"generation"`
	Apps       map[string]App `json:"apps"`
}

// App is one installed binary as a slot's manifest records it (the database indexes the
// same record: store.App).
type App struct {
	Version string `json:"version"`
	MD5     string `json:"md5"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Serial  int64  `json:"serial,omitempty"`
	Signed  bool   `json:"signed"`
}

// ErrNoSlot: nothing was ever installed (no `current` link).
var ErrNoSlot = errors.New("no active slot")

// Slots is the layout under a state directory, opened once as an os.Root: every file
// operation resolves inside it, so no symlink leads out of it.
//
//	current -> slots/a      (relative symlink, replaced with rename(2))
//	slots/a/<app>, slots/a/.manifest.json
//	slots/b/...
//	slots/b.tmp/            (staging, removed on any failure or restart)
//	downloads/<member>      (resumable downloads)
//	agent.db, lock
type Slots struct {
	Dir  string // the directory's path, for messages and hooks
	root *os.Root
}

// Other returns the slot that is not s.
func Other(s string) string {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// Path is the directory of slot s.
func (l Slots) Path(s string) string { return filepath.Join(l.Dir, "slots", s) }

// Current is the path of the `current` symlink.
func (l Slots) Current() string { return filepath.Join(l.Dir, "current") }

// Active reads the `current` link: "a", "b", or ErrNoSlot.
func (l Slots) Active() (string, error) {
	if l.root == nil {
		return "", errNotOpen
	}
	target, err := l.root.Readlink("current")
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNoSlot
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", l.Current(), err)
	}
	switch target {
	case "slots/a":
		return SlotA, nil
	case "slots/b":
		return SlotB, nil
	}
	return "", fmt.Errorf("%w: %s points to %q, not slots/a or slots/b", ErrBadLink, l.Current(), target)
}

// ErrBadLink: `current` is not a link to slots/a or slots/b.
var ErrBadLink = errors.New("bad current link")

// Manifest reads slot s's manifest.
func (l Slots) Manifest(s string) (*Manifest, error) {
	if l.root == nil {
		return nil, errNotOpen
	}
	name := "slots/" + s + "/" + ManifestName
	if fi, err := l.root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("slot %s manifest %s is %s", s, filepath.Join(l.Dir, name), kind(fi))
	}
	raw, err := l.root.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("slot %s manifest: %w", s, err)
	}
	for app := range m.Apps {
		if err := packaging.ValidFileName(app); err != nil {
			return nil, fmt.Errorf("slot %s manifest: %w", s, err)
		}
	}
	return &m, nil
}

// WriteManifest replaces slot s's manifest durably (healing a lost one): a new file, fsync'd,
// renamed over the old one, and the slot directory fsync'd.
func (l Slots) WriteManifest(s string, m *Manifest) error {
	if l.root == nil {
		return errNotOpen
	}
	raw, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	dir := "slots/" + s
	tmp := dir + "/" + ManifestName + ".tmp"
	f, err := l.root.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.root.Rename(tmp, dir+"/"+ManifestName)
	}
	if err != nil {
		l.root.Remove(tmp)
		return fmt.Errorf("write slot %s manifest: %w", s, err)
	}
	return l.SyncDir(dir)
}

// RemoveStray removes a file the slot's manifest does not list (found by re-verification)
// and syncs the slot directory.
func (l Slots) RemoveStray(s, name string) error {
	if l.root == nil {
		return errNotOpen
	}
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || name == ManifestName {
		return fmt.Errorf("not a stray file of slot %s: %q", s, name)
	}
	if err := l.root.RemoveAll("slots/" + s + "/" + name); err != nil {
		return err
	}
	return l.SyncDir("slots/" + s)
}

// Cleanup removes what an interrupted install leaves: staging directories and a
// half-made `current.tmp` link. It never touches a sealed slot.
func (l Slots) Cleanup() error {
	if l.root == nil {
		return errNotOpen
	}
	for _, s := range []string{SlotA, SlotB} {
		if err := l.root.RemoveAll("slots/" + s + ".tmp"); err != nil {
			return err
		}
	}
	if err := l.root.Remove("current.tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Switch points `current` at slot s atomically: a new relative symlink renamed over the old
// one, then an fsync of the directory so the rename survives a power cut.
func (l Slots) Switch(s string) error {
	if l.root == nil {
		return errNotOpen
	}
	l.root.Remove("current.tmp")
	if err := l.root.Symlink("slots/"+s, "current.tmp"); err != nil {
		return fmt.Errorf("switch to slot %s: %w", s, err)
	}
	if err := l.root.Rename("current.tmp", "current"); err != nil {
		return fmt.Errorf("switch to slot %s: %w", s, err)
	}
	return l.SyncDir(".")
}

// Unlink removes `current` (a first install rolled back: nothing is active) durably.
func (l Slots) Unlink() error {
	if l.root == nil {
		return errNotOpen
	}
	if err := l.root.Remove("current"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return l.SyncDir(".")
}

// Verify re-hashes slot s against want: every app present with its size, MD5 and SHA-256,
// and nothing else but the manifest.
func (l Slots) Verify(s string, want map[string]App) error {
	bad, err := l.Check(s, want, nil)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		var problems []string
		for app, p := range bad {
			problems = append(problems, app+": "+p)
		}
		sort.Strings(problems)
		return fmt.Errorf("slot %s differs from the database: %s", s, strings.Join(problems, "; "))
	}
	return nil
}

// Check re-hashes slot s against want and returns what differs, by file name. read, when
// set, wraps each file's reader (a rate limit).
func (l Slots) Check(s string, want map[string]App, read func(io.Reader) io.Reader) (map[string]string, error) {
	dir := "slots/" + s
	entries, err := l.readDir(dir)
	if err != nil {
		return nil, err
	}
	bad := map[string]string{}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Name() == ManifestName {
			continue
		}
		seen[e.Name()] = true
		w, ok := want[e.Name()]
		if !ok {
			bad[e.Name()] = "not in the database"
			continue
		}
		if !e.Type().IsRegular() {
			bad[e.Name()] = "not a regular file"
			continue
		}
		d, err := l.digest(dir+"/"+e.Name(), read)
		switch {
		case err != nil:
			bad[e.Name()] = err.Error()
		case d.Size != w.Size || d.MD5 != w.MD5 || d.SHA256 != w.SHA256:
			bad[e.Name()] = fmt.Sprintf("size %d md5 %s sha256 %s, want %d %s %s", d.Size, d.MD5, d.SHA256, w.Size, w.MD5, w.SHA256)
		}
	}
	for app := range want {
		if !seen[app] {
			bad[app] = "missing"
		}
	}
	return bad, nil
}

func (l Slots) digest(name string, read func(io.Reader) io.Reader) (packaging.Digests, error) {
	f, err := l.root.Open(name)
	if err != nil {
		return packaging.Digests{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if read != nil {
		r = read(f)
	}
	return packaging.DigestReader(r)
}

// Digest hashes a file under the state directory (a finished download).
func (l Slots) Digest(name string) (packaging.Digests, error) {
	if l.root == nil {
		return packaging.Digests{}, errNotOpen
	}
	return l.digest(name, nil)
}

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
	if err := packaging.ValidFileName(name); err != nil {
		return packaging.Digests{}, err
	}
	f, err := st.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return packaging.Digests{}, err
	}
	d := packaging.NewDigester()
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
	if _, err := st.WriteFile(ManifestName+".tmp", strings.NewReader(string(raw))); err != nil {
		return err
	}
	if err := st.synced(); err != nil {
		return err
	}
	if err := st.root.Rename(ManifestName+".tmp", ManifestName); err != nil {
		return err
	}
	if err := syncDir(st.root, "."); err != nil {
		return err
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

func syncDir(root *os.Root, name string) error {
	d, err := root.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", filepath.Join(root.Name(), name), err)
	}
	return nil
}
