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
	"syscall"
	"testing"
	"time"
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

// outside lists everything of the test's directory but the state directory, its runtime
// directory and the catalog the server publishes: what the agent must never change.
func (w *world) outside() string {
	w.t.Helper()
	var parts []string
	entries, _ := os.ReadDir(w.dir)
	for _, e := range entries {
		if n := e.Name(); n != "state" && n != "state.run" && n != "cat" {
			parts = append(parts, n+":\n"+tree(w.t, filepath.Join(w.dir, n)))
		}
	}
	return strings.Join(parts, "\n")
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

// With the database missing, empty or unreadable, `status` and `verify` read the slot
// manifests (and say so) instead of "nothing installed"; nothing is written.
func TestStatusAndVerifyWithoutDatabase(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(db string)
	}{
		{"missing", func(db string) { os.Remove(db) }},
		{"empty", func(db string) { os.Truncate(db, 0) }},
		{"zero-filled", func(db string) { os.WriteFile(db, make([]byte, 32768), 0o600) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 4096, "")
			w.mustAgent("check", "--once")
			c.damage(filepath.Join(w.state, "agent.db"))
			before, outside := tree(t, w.state), w.outside()
			st := w.mustAgent("status")
			if !strings.Contains(st.stdout, "slot a, generation 1") || !strings.Contains(st.stdout, "shown from the slot manifests") || !strings.Contains(st.stdout, "scoreboard") {
				t.Fatalf("status:\n%s%s", st.stdout, st.stderr)
			}
			v := w.mustAgent("verify")
			if !strings.Contains(v.stdout, "ok: slot a") || !strings.Contains(v.stderr, "verifying against the slot manifests") {
				t.Fatalf("verify:\n%s%s", v.stdout, v.stderr)
			}
			if got := tree(t, w.state); got != before {
				t.Fatalf("status or verify wrote to the state directory:\n%s\nwas\n%s", got, before)
			}
			w.converges()
			if st := w.mustAgent("status"); strings.Contains(st.stdout, "shown from the slot manifests") {
				t.Fatalf("the check did not rebuild the database:\n%s", st.stdout)
			}
			if w.outside() != outside {
				t.Fatal("files outside state_dir changed")
			}
		})
	}
}

// Damaged slot states heal from what is intact, and `verify` (which fails before) and
// `check` agree afterwards.
func TestDamagedSlotStatesHeal(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(w *world)
		want   string // the slot active afterwards
		log    string
	}{
		{"current names a missing slot", func(w *world) {
			os.RemoveAll(filepath.Join(w.state, "slots", "b"))
		}, "slots/b", "switched to the whole slot"}, // back to a (generation 1), then updated into b
		{"current names no slot", func(w *world) {
			os.Remove(filepath.Join(w.state, "current"))
			os.Symlink("slots/zz", filepath.Join(w.state, "current"))
		}, "slots/b", "switched to the whole slot"},
		{"manifest missing", func(w *world) {
			os.Remove(filepath.Join(w.state, "slots", "b", ".manifest.json"))
		}, "slots/b", "rewrote the active slot's manifest from the database"},
		{"manifest not JSON", func(w *world) {
			os.WriteFile(filepath.Join(w.state, "slots", "b", ".manifest.json"), []byte("{garbage"), 0o644)
		}, "slots/b", "rewrote the active slot's manifest from the database"},
		{"manifest and database lost", func(w *world) {
			os.Remove(filepath.Join(w.state, "slots", "b", ".manifest.json"))
			os.Remove(filepath.Join(w.state, "agent.db"))
		}, "slots/b", "switched to the whole slot"},
		{"no slot whole", func(w *world) {
			os.Remove(filepath.Join(w.state, "slots", "b", ".manifest.json"))
			os.Remove(filepath.Join(w.state, "slots", "a", ".manifest.json"))
			os.Remove(filepath.Join(w.state, "agent.db"))
		}, "slots/a", "no slot is whole"}, // installed afresh
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 4096, "")
			w.mustAgent("check", "--once") // generation 1 in a
			w.release("scoreboard", "4.0.0", randomBytes(20000, 9), 80)
			w.mustAgent("check", "--once") // generation 2 in b
			if w.wholeSlot() != "slots/b" {
				t.Fatal("setup: not in slot b")
			}
			c.damage(w)
			outside := w.outside()
			if r := w.agent(nil, "verify"); r.code == 0 {
				t.Fatalf("verify passes a damaged state:\n%s", r.stdout)
			}
			r := w.mustAgent("check", "--once")
			if !strings.Contains(r.stderr, "level=ERROR") || !strings.Contains(r.stderr, c.log) {
				t.Fatalf("check did not say how it healed (%q):\n%s", c.log, r.stderr)
			}
			// Healing to the older slot is followed by the update in the same check.
			if got := w.wholeSlot(); got != c.want {
				t.Fatalf("active %s, want %s", got, c.want)
			}
			w.mustAgent("verify")
			w.converges()
			if w.outside() != outside {
				t.Fatal("files outside state_dir changed")
			}
		})
	}
}

// The daemon re-verifies the active slot (verify.interval): a binary changed on disk stops
// being claimed, the next check fetches it again, and status says what was found and
// repaired; a stray file is removed and a hand-edited manifest rewritten.
func TestDaemonSelfRepair(t *testing.T) {
	w := newWorld(t, 8192, "verify:\n  interval: 1s\n  rate: 64MiB\npoll:\n  interval: 1h\n")
	w.mustAgent("check", "--once")
	slot := filepath.Join(w.state, "slots", "a")
	want, _ := os.ReadFile(filepath.Join(slot, "scoreboard"))
	raw := append([]byte(nil), want...)
	raw[100] ^= 0x40 // one flipped bit
	os.WriteFile(filepath.Join(slot, "scoreboard"), raw, 0o644)
	os.WriteFile(filepath.Join(slot, "stray"), []byte("x"), 0o644)
	// (`ota-agent verify` would record it too: TestVerifyRecordsDamage. Here the daemon finds it.)
	reqs := w.srv.Stats().RequestsByPath["/package"]
	outside := w.outside()
	d := w.startDaemon(t)
	waitFor(t, "the repair", 20*time.Second, func() bool { return strings.Contains(d.log(), "repaired: fetched again") })
	waitFor(t, "the check to end", 10*time.Second, func() bool {
		return strings.Contains(d.log(), "STATUS") || strings.Contains(d.log(), "check done") || w.srv.Stats().RequestsByPath["/package"] > reqs
	})
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	log := d.log()
	for _, s := range []string{"verify: the active slot differs from the database", "asking the server again for apps found damaged on disk"} {
		if !strings.Contains(log, s) {
			t.Errorf("the log lacks %q:\n%s", s, log)
		}
	}
	cur := filepath.Join(w.state, "current")
	if got, _ := os.ReadFile(filepath.Join(cur, "scoreboard")); string(got) != string(want) {
		t.Fatal("scoreboard was not fetched again")
	}
	if _, err := os.Stat(filepath.Join(cur, "stray")); err == nil {
		t.Fatal("the stray file is still in the active slot")
	}
	st := w.mustAgent("status")
	for _, s := range []string{"last verify:", "found scoreboard: size", "repaired: scoreboard: fetched again", "repaired: stray: not in the database"} {
		if !strings.Contains(st.stdout, s) {
			t.Errorf("status lacks %q:\n%s", s, st.stdout)
		}
	}
	w.converges()

	// A hand-edited manifest (the files are right): rewritten from the database.
	m := filepath.Join(w.state, "current", ".manifest.json")
	mraw, _ := os.ReadFile(m)
	edited := strings.Replace(string(mraw), `"version": "`, `"version": "9`, 1)
	os.WriteFile(m, []byte(edited), 0o644)
	if r := w.agent(nil, "verify"); r.code == 0 || !strings.Contains(r.stderr, "manifest") {
		t.Fatalf("verify misses the edited manifest: %d\n%s", r.code, r.stderr)
	}
	time.Sleep(1100 * time.Millisecond) // verify.interval: 1s since the last one
	d = w.startDaemon(t)
	waitFor(t, "the manifest rewrite", 20*time.Second, func() bool { return strings.Contains(d.log(), "manifest rewritten from the database") })
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if got, _ := os.ReadFile(m); string(got) != string(mraw) {
		t.Fatalf("manifest not rewritten:\n%s", got)
	}
	w.converges()
	if w.outside() != outside {
		t.Fatal("files outside state_dir changed")
	}
}

// install.max_attempts: a release whose bytes fail verification is refused after that many
// tries; the next check fetches nothing; a good release later installs.
func TestRetryBudget(t *testing.T) {
	w := newWorld(t, 4096, "install:\n  max_attempts: 2\n")
	w.mustAgent("check", "--once")
	w.release("scoreboard", "7.0.0", randomBytes(20000, 12), 70)
	for _, r := range w.srv.Catalog().Rows {
		if r.App == "scoreboard" && r.Env == "prod" {
			raw, _ := os.ReadFile(r.Path())
			raw[10] ^= 1 // the CDN's copy rots after the release was signed
			os.WriteFile(r.Path(), raw, 0o644)
		}
	}
	w.srv.FlushEdge()
	if r := w.agent(nil, "check", "--once"); r.code != 4 || strings.Contains(r.stderr, "gave up") {
		t.Fatalf("first attempt: exit %d\n%s", r.code, r.stderr)
	}
	r := w.agent(nil, "check", "--once")
	if r.code != 4 || !strings.Contains(r.stderr, "gave up after 2 attempts (install.max_attempts)") {
		t.Fatalf("second attempt: exit %d\n%s", r.code, r.stderr)
	}
	before := w.srv.Stats().BytesByPath["/package"]
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "up-to-date") {
		t.Fatalf("after giving up: %s", r.stdout)
	}
	if w.srv.Stats().BytesByPath["/package"] != before {
		t.Fatal("the refused release was fetched again")
	}
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "refused: scoreboard 7.0.0") || !strings.Contains(st.stdout, "gave up after 2 failed installs") {
		t.Fatalf("status:\n%s", st.stdout)
	}
	w.converges()
	w.release("scoreboard", "7.0.1", randomBytes(20000, 13), 71)
	w.mustAgent("check", "--once")
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "7.0.1") || strings.Contains(st.stdout, "refused:") {
		t.Fatalf("a good release after the refusal:\n%s", st.stdout)
	}
}

// install.windows outside the window: check stages (exit 0, "staged"), status says so, the
// active slot is untouched; `apply` switches it now; `apply` with nothing staged exits 1.
func TestStagedAndApply(t *testing.T) {
	day := time.Now().Add(72 * time.Hour).Format("Mon") // never today
	w := newWorld(t, 4096, "install:\n  windows: [\""+day+" 03:00-04:00\"]\n")
	w.writeConfig("")
	w.mustAgent("check", "--once") // installed without windows
	w.writeConfig("install:\n  windows: [\"" + day + " 03:00-04:00\"]\n")
	w.release("scoreboard", "9.0.0", randomBytes(9000, 31), 99)
	r := w.mustAgent("check", "--once", "--json")
	if !strings.Contains(r.stdout, `"result": "staged"`) || w.wholeSlot() != "slots/a" {
		t.Fatalf("outside the window:\n%s", r.stdout)
	}
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "staged: slot b") {
		t.Fatalf("status:\n%s", st.stdout)
	}
	w.mustAgent("verify")
	r = w.mustAgent("apply")
	if !strings.Contains(r.stdout, "applied: slot b") || w.wholeSlot() != "slots/b" {
		t.Fatalf("apply:\n%s%s", r.stdout, r.stderr)
	}
	if r := w.agent(nil, "apply"); r.code != 1 || !strings.Contains(r.stderr, "nothing is staged") {
		t.Fatalf("apply with nothing staged: exit %d\n%s", r.code, r.stderr)
	}
	w.converges()
}
