package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, path string) *DB {
	t.Helper()
	db, err := openPath(t, path, Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("integrity check after the test: %v", err)
		}
	})
	return db
}

func TestStateJournalAndRecords(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "agent.db"))
	if s, err := db.State(); err != nil || s != nil {
		t.Fatalf("empty database: %v %v", s, err)
	}
	g := &Generation{N: 1, Slot: "a", Apps: map[string]App{"x": {Version: "1", MD5: "m"}}}
	if err := db.SetJournal(&Journal{Step: StepSwitch, Next: g}); err != nil {
		t.Fatal(err)
	}
	if j, _ := db.Journal(); j == nil || j.Next.N != 1 {
		t.Fatalf("journal %+v", j)
	}
	if err := db.Batch(func(db *DB) error {
		if err := db.SetState(&State{Generation: *g, Status: StatusCommitted}); err != nil {
			return err
		}
		return db.SetJournal(nil)
	}); err != nil {
		t.Fatal(err)
	}
	if j, _ := db.Journal(); j != nil {
		t.Fatal("the batch did not clear the journal")
	}
	if s, _ := db.State(); s.Apps["x"].MD5 != "m" {
		t.Fatalf("state %+v", s)
	}
	db.Refuse("aa", Refusal{App: "x", Version: "2"})
	db.Refuse("bb", Refusal{App: "y", Version: "1"})
	db.ForgetRefusals("x", "")
	if r, _ := db.Refusals(); len(r) != 1 || r["bb"].App != "y" {
		t.Fatalf("refusals %+v", r)
	}
	db.RaiseTimeFloor(time.Unix(2000, 0))
	db.RaiseTimeFloor(time.Unix(1000, 0))
	if f, _ := db.TimeFloor(); f.Unix() != 2000 {
		t.Fatalf("time floor went down to %v", f.Unix())
	}
}

// TestCorruptFileMovedAside: a file bbolt cannot read is kept for inspection and replaced.
func TestCorruptFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.db")
	db := openTest(t, path)
	db.SetState(&State{Generation: Generation{N: 3, Slot: "b"}})
	raw, _ := os.ReadFile(path)
	for i := 4096; i < len(raw) && i < 4096*4; i++ {
		raw[i] ^= 0x5a // scribble over the meta and freelist pages
	}
	os.WriteFile(path, raw, 0o600)
	db2, err := openPath(t, path, Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !db2.Rebuilt {
		t.Fatal("corruption not noticed")
	}
	if s, _ := db2.State(); s != nil {
		t.Fatalf("rebuilt database kept state %+v", s)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 1 {
		t.Fatalf("corrupt file not kept aside: %v", m)
	}
}

// TestLockedTimesOut: with the file held, Open fails after its Timeout instead of hanging.
func TestLockedTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	openTest(t, path)
	holder, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	_, err = openPath(t, path, Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("want ErrLocked, got %v", err)
	}
}

// openPath opens the database at path through a root on its directory, as the agent does.
func openPath(t testing.TB, path string, o Options) (*DB, error) {
	t.Helper()
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return Open(root, filepath.Base(path), o)
}

// A link planted at the database's name is refused, not followed: its target is untouched.
func TestOpenRefusesALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("not a database"), 0o644)
	os.Symlink(victim, filepath.Join(dir, "agent.db"))
	if _, err := openPath(t, filepath.Join(dir, "agent.db"), Options{Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a linked database: %v", err)
	}
	if raw, _ := os.ReadFile(victim); string(raw) != "not a database" {
		t.Fatal("the link's target changed")
	}
}
