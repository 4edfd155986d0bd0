package store

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// holdIdle is how long the file stays open after its last transaction. A check's local
// steps come in bursts of a few milliseconds: one open serves a burst (an open and its
// close cost ~0.1 ms of CPU each, mostly mmap, munmap and the TLB shootdown on every
// thread). Between bursts (a network wait, a download, a hook) it is closed, so another
// process's `ota-agent status` waits at most this long for the lock.
const holdIdle = 100 * time.Millisecond

// handle is the file held open between transactions, shared by a DB and its Batch copies.
type handle struct {
	mu    sync.Mutex
	b     *bolt.DB
	users int
	last  time.Time // when the last transaction ended
	timer *time.Timer
	opens int // how often the file was opened (tests)
}

// acquire returns the open file, opening it if needed; release ends the use.
func (d *DB) acquire() (*bolt.DB, error) {
	h := d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.b == nil {
		b, err := d.open()
		if err != nil {
			return nil, err
		}
		h.b = b
		h.opens++
	}
	h.users++
	return h.b, nil
}

func (d *DB) release() {
	h := d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.users--
	if h.users == 0 {
		h.last = time.Now()
		h.arm(holdIdle)
	}
}

// hold keeps b (opened by Open for its consistency check) as the handle.
func (d *DB) hold(b *bolt.DB) {
	h := d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.b, h.last = b, time.Now()
	h.arm(holdIdle)
}

// drop closes the handle now (Close).
func (d *DB) drop() {
	h := d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
	if h.b != nil && h.users == 0 {
		h.b.Close()
		h.b = nil
	}
}

// arm (h.mu held) closes the handle after it has been idle for after.
func (h *handle) arm(after time.Duration) {
	if h.timer == nil {
		h.timer = time.AfterFunc(after, h.expire)
		return
	}
	h.timer.Reset(after)
}

func (h *handle) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.b == nil || h.users > 0 {
		return // in use: its release arms the timer again
	}
	if idle := time.Since(h.last); idle < holdIdle {
		h.arm(holdIdle - idle) // used since the timer was set
		return
	}
	h.b.Close()
	h.b = nil
}
