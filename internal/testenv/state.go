package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/store"
)

// StateDir is a state directory whose slot a holds files (name → content), a staging
// directory for slot b, and a database in a temporary file, for the tests of the rooms that
// assemble a slot; all are closed when the test ends.
func StateDir(t testing.TB, files map[string][]byte) (installer.Slots, *installer.Staging, *store.DB) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "slots", "a"), 0o755)
	for name, data := range files {
		os.WriteFile(filepath.Join(dir, "slots", "a", name), data, 0o644)
	}
	slots, err := installer.OpenState("", dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slots.Close() })
	st, err := slots.Stage("b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Abort)
	db, err := store.OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return slots, st, db
}
