package installer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func stage(t *testing.T, l Slots, slot string, files map[string]string, gen int64) map[string]App {
	t.Helper()
	st, err := l.Stage(slot)
	if err != nil {
		t.Fatal(err)
	}
	apps := map[string]App{}
	for name, body := range files {
		d, err := st.WriteFile(name, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		apps[name] = App{MD5: d.MD5, SHA256: d.SHA256, Size: d.Size}
	}
	if err := st.Seal(Manifest{Generation: gen, Apps: apps}); err != nil {
		t.Fatal(err)
	}
	return apps
}

func TestStageSealSwitchVerify(t *testing.T) {
	l := openState(t, t.TempDir())
	if _, err := l.Active(); err != ErrNoSlot {
		t.Fatalf("fresh dir: %v", err)
	}
	apps := stage(t, l, SlotA, map[string]string{"app1": "one", "app2": "two"}, 1)
	if err := l.Switch(SlotA); err != nil {
		t.Fatal(err)
	}
	if s, _ := l.Active(); s != SlotA {
		t.Fatalf("active %q", s)
	}
	if target, _ := os.Readlink(l.Current()); target != "slots/a" {
		t.Fatalf("link %q is not relative", target)
	}
	if err := l.Verify(SlotA, apps); err != nil {
		t.Fatal(err)
	}
	// Carry one over by hard link into B; the A copy is untouched.
	st, _ := l.Stage(SlotB)
	if err := st.CarryOver("app1", SlotA); err != nil {
		t.Fatal(err)
	}
	st.WriteFile("app3", strings.NewReader("three"))
	st.Abort()
	if _, err := os.Stat(l.Path(SlotB) + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("Abort left the staging directory")
	}
	if err := l.Verify(SlotA, apps); err != nil {
		t.Fatalf("aborting B changed A: %v", err)
	}
	// A tampered or extra file is reported by name.
	os.WriteFile(filepath.Join(l.Path(SlotA), "app2"), []byte("TWO"), 0o644)
	os.WriteFile(filepath.Join(l.Path(SlotA), "intruder"), []byte("x"), 0o644)
	err := l.Verify(SlotA, apps)
	if err == nil || !strings.Contains(err.Error(), "app2") || !strings.Contains(err.Error(), "intruder") {
		t.Fatalf("verify: %v", err)
	}
}

func TestStagingRefusesUnsafeNames(t *testing.T) {
	l := openState(t, t.TempDir())
	st, err := l.Stage(SlotA)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	outside := filepath.Join(l.Dir, "outside")
	for _, name := range []string{"../outside", "/etc/passwd", "a/b", "", ".."} {
		if _, err := st.WriteFile(name, strings.NewReader("x")); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
	// A symlink planted in staging is not followed, and an existing name is not overwritten.
	os.Symlink(outside, filepath.Join(st.Dir(), "planted"))
	if _, err := st.WriteFile("planted", strings.NewReader("x")); err == nil {
		t.Error("wrote through a planted symlink")
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Error("a file was created outside the staging directory")
	}
}

func TestCleanupRemovesHalfDoneWork(t *testing.T) {
	l := openState(t, t.TempDir())
	stage(t, l, SlotA, map[string]string{"x": "1"}, 1)
	l.Switch(SlotA)
	st, _ := l.Stage(SlotB)
	st.WriteFile("y", strings.NewReader("2"))
	os.Symlink("slots/b", l.Current()+".tmp")
	if err := l.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.Path(SlotB) + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("staging survived Cleanup")
	}
	if _, err := os.Lstat(l.Current() + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("current.tmp survived Cleanup")
	}
	if s, _ := l.Active(); s != SlotA {
		t.Fatal("Cleanup touched the active slot")
	}
}

func openState(t *testing.T, dir string) Slots {
	t.Helper()
	l, err := OpenState("", dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Links planted at the agent's own names are removed when the state directory is opened
// (their targets untouched), and nothing under it is reached through a link that leads out.
func TestOpenStateRemovesPlantedLinks(t *testing.T) {
	dir, victim := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(victim, "precious"), []byte("keep me"), 0o644)
	for _, name := range []string{"downloads", "slots", "lock", "agent.db"} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	var removed []string
	l, err := OpenState("", dir, true, func(path, was string) { removed = append(removed, filepath.Base(path)+" ("+was+")") })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(removed) != 4 {
		t.Fatalf("removed %v, want the four planted links", removed)
	}
	for _, name := range []string{"downloads", "slots"} {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || !fi.IsDir() {
			t.Fatalf("%s not remade as a directory: %v", name, err)
		}
	}
	stage(t, l, SlotA, map[string]string{"x": "1"}, 1)
	if err := l.Switch(SlotA); err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(raw) != "keep me" {
		t.Fatalf("the link's target was changed: %q %v", raw, err)
	}
	if entries, _ := os.ReadDir(victim); len(entries) != 1 {
		t.Fatalf("files appeared in the link's target: %v", entries)
	}

	// A slot directory replaced by a link to the outside after opening is not followed.
	os.RemoveAll(filepath.Join(dir, "slots", "a"))
	os.Symlink(victim, filepath.Join(dir, "slots", "a"))
	if _, err := l.Manifest(SlotA); err == nil {
		t.Fatal("read a manifest through a link that leads out")
	}
	if err := l.Verify(SlotA, nil); err == nil {
		t.Fatal("verified a slot through a link that leads out")
	}
	// A planted link inside downloads/ is removed on the next open.
	os.Symlink(filepath.Join(victim, "precious"), filepath.Join(dir, "downloads", "app1-1.0"))
	l2 := openState(t, dir)
	if _, err := os.Lstat(filepath.Join(dir, "downloads", "app1-1.0")); !os.IsNotExist(err) {
		t.Fatal("planted download link survived")
	}
	if _, err := os.Lstat(filepath.Join(dir, "slots", "a")); !os.IsNotExist(err) {
		t.Fatal("planted slot link survived")
	}
	_ = l2
}

// Under an image root, an absolute link on the way to the state directory stays inside it.
func TestOpenStateStaysInsideSysroot(t *testing.T) {
	sysroot, host := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(sysroot, "var"), 0o755)
	os.Symlink(host, filepath.Join(sysroot, "var", "lib")) // absolute: would lead to the host
	_, err := OpenState(sysroot, filepath.Join(sysroot, "var/lib/ota-agent"), true, nil)
	if err == nil {
		t.Fatal("followed an absolute link out of the image root")
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Fatalf("created %v on the host", entries)
	}
}

// A hard link (a second name) slipped into staging is caught by the file count at Seal,
// even when its name is an app of the manifest; a file the manifest does not name is too.
func TestSealRefusesFilesBeyondTheManifest(t *testing.T) {
	l := openState(t, t.TempDir())
	st, err := l.Stage(SlotA)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := st.WriteFile("app1", strings.NewReader("one"))
	st.WriteFile("stray", strings.NewReader("x"))
	err = st.Seal(Manifest{Generation: 1, Apps: map[string]App{"app1": {MD5: d.MD5, SHA256: d.SHA256, Size: d.Size}}})
	if err == nil || !strings.Contains(err.Error(), "stray") {
		t.Fatalf("sealed a slot with a stray file: %v", err)
	}
	st.Abort()
	// Fewer files than apps.
	st, _ = l.Stage(SlotA)
	st.WriteFile("app1", strings.NewReader("one"))
	err = st.Seal(Manifest{Generation: 1, Apps: map[string]App{"app1": {}, "app2": {}}})
	if err == nil || !strings.Contains(err.Error(), "1 files for 2 apps") {
		t.Fatalf("sealed a slot missing an app: %v", err)
	}
	st.Abort()
}
