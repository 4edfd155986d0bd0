package checklog

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/store"
)

// The runtime record of a quiet check is overwritten in place while its padded size holds
// (the same inode: no file made or dropped per poll), replaced by a rename when it grows, and
// a reader that meets a torn or foreign record takes none.
func TestQuietRecordIsRewrittenInPlace(t *testing.T) {
	l := Log{RuntimeDir: t.TempDir(), StateDir: "/var/lib/ota-agent"}
	base := store.CheckRecord{Time: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC), Result: "up-to-date"}
	write := func(checks int64, unlisted ...string) (ino uint64, size int64) {
		t.Helper()
		rec := base
		rec.Time, rec.Unlisted = base.Time.Add(time.Duration(checks)*time.Minute), unlisted
		if err := l.writeQuiet(quietRecord{Base: base.Time, Record: rec, Checks: checks}); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(l.path())
		if err != nil {
			t.Fatal(err)
		}
		if q := l.quietAfter(&base); q == nil || q.Checks != checks || len(q.Record.Unlisted) != len(unlisted) {
			t.Fatalf("after writing %d checks the record reads %+v", checks, q)
		}
		return fi.Sys().(*syscall.Stat_t).Ino, fi.Size()
	}
	ino1, size1 := write(1)
	if size1%quietBlock != 0 {
		t.Errorf("record of %d bytes, not padded to %d", size1, quietBlock)
	}
	for n := int64(2); n < 200; n += 37 {
		if ino, size := write(n); ino != ino1 || size != size1 {
			t.Fatalf("check %d: inode %d size %d, want the first record's %d (%d bytes) rewritten in place", n, ino, size, ino1, size1)
		}
	}
	if _, size := write(300, strings.Repeat("app_", 200)); size <= size1 || size%quietBlock != 0 {
		t.Errorf("a record that outgrew its block: %d bytes", size)
	}
	if entries, _ := os.ReadDir(l.RuntimeDir); len(entries) != 1 {
		t.Errorf("runtime_dir holds %d files, want the record alone", len(entries))
	}
	raw, _ := os.ReadFile(l.path())
	os.WriteFile(l.path(), raw[:len(raw)/3], 0o644) // a write cut short
	if q := l.quietAfter(&base); q != nil {
		t.Errorf("a torn record was read: %+v", q)
	}
	other := base
	other.Time = base.Time.Add(time.Hour)
	write(5)
	if q := l.quietAfter(&other); q != nil {
		t.Errorf("a record following another agent.db record was read: %+v", q)
	}
}
