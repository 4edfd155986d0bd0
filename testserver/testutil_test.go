package testserver

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for TTL and expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newSample writes a small signed-less sample catalog and serves it.
func newSample(t testing.TB, opts Options) (*Server, string, *fakeClock) {
	t.Helper()
	cat, err := WriteSample(t.TempDir(), 4096, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.SpoolDir = t.TempDir()
	s, err := New(cat, opts)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s.SetClock(clk.now)
	return s, startServer(t, s), clk
}
