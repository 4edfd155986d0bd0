package agent

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ota-agent/ota-agent/internal/transport"
)

// BuildTime (unix seconds) is stamped by the Makefile; the time floor never goes below it.
var BuildTime = ""

// sourceDate is the floor when the binary was built without a stamp.
var sourceDate = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func buildFloor() time.Time {
	if n, err := strconv.ParseInt(BuildTime, 10, 64); err == nil && n > 0 {
		return time.Unix(n, 0)
	}
	return sourceDate
}

// clock is the agent's notion of now for certificate checks: the device clock, but never
// earlier than the floor (build time, last trusted time). Devices without an RTC boot in 1970.
type clock struct {
	now   func() time.Time
	floor atomic.Int64 // unix seconds
}

func (c *clock) Now() time.Time {
	t := c.now()
	if f := c.floor.Load(); t.Unix() < f {
		return time.Unix(f, 0)
	}
	return t
}

// raise moves the floor up (never down).
func (c *clock) raise(t time.Time) {
	for {
		cur := c.floor.Load()
		if t.Unix() <= cur || c.floor.CompareAndSwap(cur, t.Unix()) {
			return
		}
	}
}

// Version is stamped by the Makefile (-X ...agent.Version=...).
var Version = "dev"

// maxErrorBody bounds what is read of an error answer.
const maxErrorBody = 64 << 10

func init() { transport.UserAgent = "ota-agent/" + Version }
