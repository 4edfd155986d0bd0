// Package installer owns the A/B directory slots: a fresh staging directory per install,
// safe creation of every file, the slot manifest, the atomic switch of the `current`
// symlink, and re-verification. It never decides what to install (the agent does).
package installer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
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
	err = atomicfile.WriteIn(l.root, "slots/"+s+"/"+ManifestName, 0o644, func(w io.Writer) error {
		_, err := w.Write(raw)
		return err
	})
	if err != nil {
		return fmt.Errorf("slot %s manifest: %w", s, err)
	}
	return nil
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
		d, err := l.digest(dir+"/"+e.Name(), read, true)
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

func (l Slots) digest(name string, read func(io.Reader) io.Reader, withMD5 bool) (packaging.Digests, error) {
	f, err := l.root.Open(name)
	if err != nil {
		return packaging.Digests{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if read != nil {
		r = read(f)
	}
	return packaging.DigestReaderFor(r, withMD5)
}

// Digest hashes a file under the state directory (a finished download), MD5 only withMD5.
func (l Slots) Digest(name string, withMD5 bool) (packaging.Digests, error) {
	if l.root == nil {
		return packaging.Digests{}, errNotOpen
	}
	return l.digest(name, nil, withMD5)
}
