package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Transactions while the file is held (here: a reader still in progress) share one open; once
// none runs, another process's read-only open (`ota-agent status`) gets the lock, and Close
// gives it up at once.
func TestHandleSharedAndReleased(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db := openTest(t, path)
	if err := db.RecordCheck(CheckRecord{Result: "up-to-date"}); err != nil {
		t.Fatal(err)
	}
	inside, stop, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- db.view(func(*bolt.Tx) error { close(inside); <-stop; return nil })
	}()
	<-inside
	before := db.h.opens
	for range 10 {
		if c, err := db.LastCheck(); err != nil || c == nil {
			t.Fatalf("last check %+v %v", c, err)
		}
	}
	if db.h.opens != before {
		t.Errorf("10 reads while the file was held opened it %d more times", db.h.opens-before)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The idle handle is closed by itself: a read-only open waits for it, well within its timeout.
	ro, err := openPath(t, path, Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("a reader after the writer's transactions ended: %v", err)
	}
	if c, err := ro.LastCheck(); err != nil || c == nil || c.Result != "up-to-date" {
		t.Fatalf("read-only last check %+v %v", c, err)
	}
	ro.Close()

	// Close releases the lock now: an open that does not wait succeeds.
	db.LastCheck()
	db.Close()
	again, err := openPath(t, path, Options{Timeout: time.Millisecond})
	if err != nil {
		t.Fatalf("open right after Close: %v", err)
	}
	again.Close()
}

// A Batch is one transaction: all its writes land together, or none if it fails.
func TestBatchAllOrNothing(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "agent.db"))
	boom := errors.New("boom")
	err := db.Batch(func(b *DB) error {
		if err := b.RecordCheck(CheckRecord{Result: "failed"}); err != nil {
			return err
		}
		if c, _ := b.LastCheck(); c == nil || c.Result != "failed" {
			t.Errorf("a Batch does not read its own write: %+v", c)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Batch returned %v", err)
	}
	if c, _ := db.LastCheck(); c != nil {
		t.Fatalf("a failed Batch left its write: %+v", c)
	}
	err = db.Batch(func(b *DB) error {
		if err := b.RecordCheck(CheckRecord{Result: "up-to-date"}); err != nil {
			return err
		}
		if err := b.RaiseTimeFloor(time.Unix(2e9, 0)); err != nil {
			return err
		}
		return b.Count(func(c *Counters) { c.Checks++ })
	})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := db.LastCheck()
	f, _ := db.TimeFloor()
	n, _ := db.Counters()
	if c == nil || c.Result != "up-to-date" || f.Unix() != 2e9 || n.Checks != 1 {
		t.Fatalf("after the Batch: check %+v, floor %v, counters %+v", c, f, n)
	}
}
