package store

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// What a power cut or a bad flash leaves of agent.db: each is moved aside and replaced by a
// working empty database, never an error that repeats at every start, never a panic.
func TestDamagedDatabaseRebuilt(t *testing.T) {
	good := func(t *testing.T) (string, []byte) {
		path := filepath.Join(t.TempDir(), "agent.db")
		db := openTest(t, path)
		db.SetState(&State{Generation: Generation{N: 3, Slot: "b"}})
		raw, _ := os.ReadFile(path)
		return path, raw
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name   string
		damage func(raw []byte) []byte
	}{
		{"zero-filled", func(raw []byte) []byte { return make([]byte, len(raw)) }},
		{"both meta pages garbage", func(raw []byte) []byte {
			for i := 0; i < 8192; i++ {
				raw[i] = byte(rng.Uint32())
			}
			return raw
		}},
		{"truncated", func(raw []byte) []byte { return raw[:5000] }},
		{"random bytes over the freelist page", func(raw []byte) []byte {
			for i := 8192; i < 12288 && i < len(raw); i++ {
				raw[i] = byte(rng.Uint32())
			}
			return raw
		}},
		{"random bytes everywhere but the metas", func(raw []byte) []byte {
			for i := 8192; i < len(raw); i++ {
				raw[i] = byte(rng.Uint32())
			}
			return raw
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, raw := good(t)
			os.WriteFile(path, c.damage(raw), 0o600)
			db, err := openPath(t, path, Options{Timeout: time.Second})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !db.Rebuilt || db.Damage == "" {
				t.Fatal("damage not noticed")
			}
			if err := db.SetState(&State{Generation: Generation{N: 4, Slot: "a"}}); err != nil {
				t.Fatalf("the new database does not work: %v", err)
			}
			if err := db.Check(); err != nil {
				t.Fatal(err)
			}
			if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 1 {
				t.Fatalf("damaged file not kept aside: %v", m)
			}
		})
	}
}

// Only the newest few damaged files are kept: a device that keeps losing power does not
// fill its state directory with them.
func TestDamagedDatabasesBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	for i := 0; i < keepCorrupt+3; i++ {
		os.WriteFile(path, make([]byte, 16384), 0o600)
		db, err := openPath(t, path, Options{Timeout: time.Second})
		if err != nil || !db.Rebuilt {
			t.Fatalf("round %d: %v %v", i, db, err)
		}
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != keepCorrupt {
		t.Fatalf("%d damaged files kept, want %d", len(m), keepCorrupt)
	}
}

// A file system problem is not damage: the file stays where it is.
func TestUnreadableDatabaseNotMoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.db")
	os.Mkdir(path, 0o700) // a directory where the file should be: EISDIR, not corruption
	if _, err := openPath(t, path, Options{Timeout: time.Second}); err == nil {
		t.Fatal("a directory opened as the database")
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("moved aside: %v", m)
	}
}
