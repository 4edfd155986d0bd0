package installer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/store"
)

func stage(t *testing.T, l Slots, slot string, files map[string]string, gen int64) map[string]store.App {
	t.Helper()
	st, err := l.Stage(slot)
	if err != nil {
		t.Fatal(err)
	}
	apps := map[string]store.App{}
	for name, body := range files {
		d, err := st.WriteFile(name, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		apps[name] = store.App{MD5: d.MD5, SHA256: d.SHA256, Size: d.Size}
	}
	if err := st.Seal(Manifest{Generation: gen, Apps: apps}); err != nil {
		t.Fatal(err)
	}
	return apps
}

func TestStageSealSwitchVerify(t *testing.T) {
	l := Slots{Dir: t.TempDir()}
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
	l := Slots{Dir: t.TempDir()}
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
	l := Slots{Dir: t.TempDir()}
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
