package agent

import (
	"strconv"
	"time"
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

// Version is stamped by the Makefile (-X ...agent.Version=...).
var Version = "dev"
