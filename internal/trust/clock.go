package trust

import (
	"sync/atomic"
	"time"
)

// Clock is the agent's notion of now for certificates and signed times: the device clock,
// but never earlier than the floor (build time, last trusted time). Devices without an RTC
// boot in 1970.
type Clock struct {
	now   func() time.Time
	floor atomic.Int64 // unix seconds
}

// NewClock is a clock over now (the device's clock) with floor as its first floor.
func NewClock(now func() time.Time, floor time.Time) *Clock {
	c := &Clock{now: now}
	c.Raise(floor)
	return c
}

// Now is the device's time, never earlier than the floor.
func (c *Clock) Now() time.Time {
	t := c.now()
	if f := c.floor.Load(); t.Unix() < f {
		return time.Unix(f, 0)
	}
	return t
}

// Raise moves the floor up (never down).
func (c *Clock) Raise(t time.Time) {
	for {
		cur := c.floor.Load()
		if t.Unix() <= cur || c.floor.CompareAndSwap(cur, t.Unix()) {
			return
		}
	}
}

// Floor is the floor now.
func (c *Clock) Floor() time.Time { return time.Unix(c.floor.Load(), 0) }
