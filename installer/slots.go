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
	"github.com/ota-agent/ota-agent/store"
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
	Generation int64                `json:"generation"`
	Apps       map[string]store.App `json:"apps"`
}

// ErrNoSlot: nothing was ever installed (no `current` link).
var ErrNoSlot = errors.New("no active slot")

// Slots is the layout under a state directory:
//
//	current -> slots/a      (relative symlink, replaced with rename(2))
//	slots/a/<app>, slots/a/.manifest.json
//	slots/b/...
//	slots/b.tmp/            (staging, removed on any failure or restart)
type Slots struct{ Dir string }

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
	target, err := os.Readlink(l.Current())
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNoSlot
	}
	if err != nil {
		return "", err
	}
	switch target {
	case "slots/a":
		return SlotA, nil
	case "slots/b":
		return SlotB, nil
	}
	return "", fmt.Errorf("%s points to %q, not slots/a or slots/b", l.Current(), target)
}

// Manifest reads slot s's manifest.
func (l Slots) Manifest(s string) (*Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(l.Path(s), ManifestName))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("slot %s manifest: %w", s, err)
	}
	return &m, nil
}

// Cleanup removes what an interrupted install leaves: staging directories and a
// half-made `current.tmp` link. It never touches a sealed slot.
func (l Slots) Cleanup() error {
	for _, s := range []string{SlotA, SlotB} {
		if err := os.RemoveAll(l.Path(s) + ".tmp"); err != nil {
			return err
		}
	}
	if err := os.Remove(l.Current() + ".tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Switch points `current` at slot s atomically: a new relative symlink renamed over the old
// one, then an fsync of the directory so the rename survives a power cut.
func (l Slots) Switch(s string) error {
	tmp := l.Current() + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink("slots/"+s, tmp); err != nil {
		return fmt.Errorf("switch to slot %s: %w", s, err)
	}
	if err := os.Rename(tmp, l.Current()); err != nil {
		return fmt.Errorf("switch to slot %s: %w", s, err)
	}
	return syncDir(l.Dir)
}

// Verify re-hashes slot s against want: every app present with its size, MD5 and SHA-256,
// and nothing else but the manifest.
func (l Slots) Verify(s string, want map[string]store.App) error {
	dir := l.Path(s)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var problems []string
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Name() == ManifestName {
			continue
		}
		seen[e.Name()] = true
		w, ok := want[e.Name()]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: not in the database", e.Name()))
			continue
		}
		if !e.Type().IsRegular() {
			problems = append(problems, fmt.Sprintf("%s: not a regular file", e.Name()))
			continue
		}
		d, err := packaging.DigestFile(filepath.Join(dir, e.Name()))
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", e.Name(), err))
		case d.Size != w.Size || d.MD5 != w.MD5 || d.SHA256 != w.SHA256:
			problems = append(problems, fmt.Sprintf("%s: size %d md5 %s sha256 %s, want %d %s %s", e.Name(), d.Size, d.MD5, d.SHA256, w.Size, w.MD5, w.SHA256))
		}
	}
	for app := range want {
		if !seen[app] {
			problems = append(problems, fmt.Sprintf("%s: missing", app))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("slot %s differs from the database: %s", s, strings.Join(problems, "; "))
	}
	return nil
}

// Staging is a fresh, empty directory beside the slot it will become.
type Staging struct {
	l    Slots
	slot string
	dir  string
	root *os.Root
	// fsyncs run in the background while the next file streams in; Seal waits for them.
	syncs   sync.WaitGroup
	syncMu  sync.Mutex
	syncErr error
}

// Stage starts building slot s: slots/<s>.tmp, emptied first.
func (l Slots) Stage(s string) (*Staging, error) {
	dir := l.Path(s) + ".tmp"
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Staging{l: l, slot: s, dir: dir, root: root}, nil
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

// Adopt links a complete file from elsewhere on the same filesystem (a finished download)
// into the staging directory as name; the original stays until the install is done, so an
// interrupted install does not download it again. Without hard links it is copied. Either
// way its bytes are fsync'd before Seal returns.
func (st *Staging) Adopt(path, name string) error {
	if err := packaging.ValidFileName(name); err != nil {
		return err
	}
	if err := os.Link(path, filepath.Join(st.dir, name)); err == nil {
		return st.linked(name)
	}
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = st.WriteFile(name, in)
	return err
}

// CarryOver puts the active slot's copy of app into the new slot: a hard link where the
// filesystem allows, else a copy.
func (st *Staging) CarryOver(app, fromSlot string) error {
	if err := packaging.ValidFileName(app); err != nil {
		return err
	}
	src := filepath.Join(st.l.Path(fromSlot), app)
	dst := filepath.Join(st.dir, app)
	if err := os.Link(src, dst); err == nil {
		return st.linked(app)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("carry %s over from slot %s: %w", app, fromSlot, err)
	}
	defer in.Close()
	_, err = st.WriteFile(app, in)
	return err
}

// Remove deletes a staged file (e.g. a member the plan does not use).
func (st *Staging) Remove(name string) error { return st.root.Remove(name) }

// Seal writes the manifest atomically, syncs the directory, replaces the old inactive slot
// with the staging directory and syncs slots/. After Seal the slot is complete on disk.
func (st *Staging) Seal(m Manifest) error {
	if err := st.synced(); err != nil {
		return err
	}
	entries, err := os.ReadDir(st.dir)
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
	if err := syncDir(st.dir); err != nil {
		return err
	}
	st.root.Close()
	final := st.l.Path(st.slot)
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(st.dir, final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

// Abort removes the staging directory.
func (st *Staging) Abort() {
	st.syncs.Wait()
	st.root.Close()
	os.RemoveAll(st.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
