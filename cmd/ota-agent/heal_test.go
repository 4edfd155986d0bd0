package main

import (
	"crypto/md5"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// tree is a listing of everything under dir, links not followed: name, kind and an MD5
// of each file's bytes or each link's target.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			lines = append(lines, rel+" -> "+l)
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			h := md5.Sum(b)
			lines = append(lines, rel+" "+hex.EncodeToString(h[:]))
		default:
			lines = append(lines, rel+"/")
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// converges asserts what every healing test ends with: the active slot is whole, verify
// passes and the next normal check is a 304.
func (w *world) converges() {
	w.t.Helper()
	w.wholeSlot()
	w.mustAgent("verify")
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout+r.stderr, "up-to-date") {
		w.t.Fatalf("the next check does not converge:\n%s%s", r.stdout, r.stderr)
	}
}

// Links planted at the agent's own names inside state_dir (downloads/, lock, an inactive
// slot, the database, a partial download) are removed, never followed: the directory they
// point to is unchanged, the update installs, and the log names every removed path.
func TestPlantedLinksNotFollowed(t *testing.T) {
	w := newWorld(t, 8192, "#metadata\n")
	w.mustAgent("check", "--once")
	victim := filepath.Join(w.dir, "victim")
	os.MkdirAll(victim, 0o755)
	os.WriteFile(filepath.Join(victim, "precious"), []byte("keep me\n"), 0o644)
	os.WriteFile(filepath.Join(victim, "scoreboard-3.0.0"), []byte("not a download\n"), 0o644)
	before := tree(t, victim)
	active := tree(t, filepath.Join(w.state, "slots", "a"))

	os.RemoveAll(filepath.Join(w.state, "downloads"))
	os.Symlink(victim, filepath.Join(w.state, "downloads"))
	os.Remove(filepath.Join(w.state, "lock"))
	os.Symlink(filepath.Join(victim, "precious"), filepath.Join(w.state, "lock"))
	os.Symlink(victim, filepath.Join(w.state, "slots", "b"))
	w.release("scoreboard", "3.0.0", randomBytes(30000, 5), 70)

	r := w.mustAgent("check", "--once")
	for _, name := range []string{"downloads", "lock", "slots/b"} {
		if !strings.Contains(r.stderr, "removed what was planted in the state directory") || !strings.Contains(r.stderr, filepath.Join(w.state, name)) {
			t.Errorf("the log does not name the removed %s:\n%s", name, r.stderr)
		}
	}
	if got := tree(t, victim); got != before {
		t.Fatalf("the links' target changed:\n%s\nwas\n%s", got, before)
	}
	if w.wholeSlot() != "slots/b" {
		t.Fatal("the update did not install into slot b")
	}
	if got := tree(t, filepath.Join(w.state, "slots", "a")); got != active {
		t.Fatal("the previously active slot changed")
	}
	w.converges()

	// A link planted in downloads/ at the name of the next download, and a database that
	// is a link: removed too, the database rebuilt from the slot manifests.
	os.Symlink(filepath.Join(victim, "precious"), filepath.Join(w.state, "downloads", "scoreboard-3.1.0"))
	db := filepath.Join(w.state, "agent.db")
	os.Rename(db, filepath.Join(victim, "agent.db"))
	os.Symlink(filepath.Join(victim, "agent.db"), db)
	before = tree(t, victim)
	w.release("scoreboard", "3.1.0", randomBytes(30000, 6), 71)
	r = w.mustAgent("check", "--once")
	if got := tree(t, victim); got != before {
		t.Fatalf("the links' target changed:\n%s\nwas\n%s", got, before)
	}
	if fi, err := os.Lstat(db); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("database not rebuilt as a file: %v", err)
	}
	if w.wholeSlot() != "slots/a" {
		t.Fatalf("the update did not install:\n%s", r.stderr)
	}
	w.converges()
}

// Before the first install: a `slots` link leading out is removed, and the slots are made
// in the state directory.
func TestPlantedSlotsLinkBeforeFirstInstall(t *testing.T) {
	w := newWorld(t, 4096, "")
	victim := filepath.Join(w.dir, "victim")
	os.MkdirAll(victim, 0o755)
	os.MkdirAll(w.state, 0o755)
	os.Symlink(victim, filepath.Join(w.state, "slots"))
	w.mustAgent("check", "--once")
	if entries, _ := os.ReadDir(victim); len(entries) != 0 {
		t.Fatalf("installed through the link: %v", entries)
	}
	w.converges()
}

// Under --root (an image build), an absolute link on the way to state_dir would lead to the
// build host: the check refuses it, naming the path, and creates nothing on the host.
func TestRootfsAbsoluteLinkRefused(t *testing.T) {
	w := newWorld(t, 4096, "")
	root := filepath.Join(w.dir, "rootfs")
	host := filepath.Join(w.dir, "host-var-lib")
	os.MkdirAll(filepath.Join(root, "var"), 0o755)
	os.MkdirAll(host, 0o755)
	os.Symlink(host, filepath.Join(root, "var", "lib"))
	cfg := filepath.Join(root, "config.yaml")
	os.WriteFile(cfg, []byte("server:\n  url: "+w.base+"/package\ndevice:\n  cpu_arch: armv7\n"), 0o644)
	out, err := exec.Command(bin, "--root", root, "--config", cfg, "check", "--once").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "var/lib/ota-agent") {
		t.Fatalf("check through an absolute link out of the image root: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Fatalf("created %v on the build host", entries)
	}
}
