package config

import (
	"fmt"
	"strings"
	"time"
)

// window is one entry of net.schedule: from..to minutes after midnight (any time when all).
type window struct {
	all      bool
	from, to int
	rate     int64
}

// parseSchedule reads net.schedule: "HH:MM-HH:MM RATE" (a range may wrap midnight) or
// "* RATE"; RATE as net.max_rate, 0 for no cap.
func parseSchedule(entries []string) ([]window, error) {
	var out []window
	for _, e := range entries {
		f := strings.Fields(e)
		if len(f) != 2 {
			return nil, fmt.Errorf("%q: want \"HH:MM-HH:MM RATE\" or \"* RATE\"", e)
		}
		rate, err := byteRate(f[1], true)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", e, err)
		}
		w := window{all: f[0] == "*", rate: rate}
		if !w.all {
			var ok bool
			if w.from, w.to, ok = timeRange(f[0]); !ok {
				return nil, fmt.Errorf("%q: want a time range like 22:00-06:00", e)
			}
		}
		out = append(out, w)
	}
	return out, nil
}

// timeRange reads HH:MM-HH:MM as minutes after midnight (the end may be 24:00).
func timeRange(s string) (from, to int, ok bool) {
	var h1, m1, h2, m2 int
	if n, _ := fmt.Sscanf(s, "%d:%d-%d:%d", &h1, &m1, &h2, &m2); n != 4 || h1 < 0 || h1 > 23 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59 {
		return 0, 0, false
	}
	return h1*60 + m1, h2*60 + m2, true
}

// covers tells whether minute m of the day lies in from..to (which may wrap midnight).
func covers(from, to, m int) bool {
	return from <= to && m >= from && m < to || from > to && (m >= from || m < to)
}

// rateAt is the bandwidth cap at t (device-local time): the first schedule entry that
// covers t, else net.max_rate; 0 is no cap.
func (c *Config) rateAt(t time.Time) int64 {
	ws, _ := parseSchedule(c.Net.Schedule)
	return scheduledRate(ws, int64(c.Net.MaxRate), t)
}

// scheduledRate is rateAt with the schedule already parsed (the limiter asks on every read).
func scheduledRate(ws []window, maxRate int64, t time.Time) int64 {
	m := t.Hour()*60 + t.Minute()
	for _, w := range ws {
		if w.all || covers(w.from, w.to, m) {
			return w.rate
		}
	}
	return maxRate
}

// installWindow is one entry of install.windows: days (none: every day) and a time range.
type installWindow struct {
	days     map[time.Weekday]bool
	from, to int // minutes after midnight; to < from wraps midnight
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// parseWindows reads install.windows: "[DAYS ]HH:MM-HH:MM", DAYS like Sat,Sun.
func parseWindows(entries []string) ([]installWindow, error) {
	var out []installWindow
	for _, e := range entries {
		f := strings.Fields(e)
		w := installWindow{}
		if len(f) == 2 {
			w.days = map[time.Weekday]bool{}
			for _, d := range strings.Split(strings.ToLower(f[0]), ",") {
				wd, ok := weekdays[d]
				if !ok {
					return nil, fmt.Errorf("%q: %q is not a day (Mon, Tue, … Sun)", e, d)
				}
				w.days[wd] = true
			}
			f = f[1:]
		}
		if len(f) != 1 {
			return nil, fmt.Errorf("%q: want \"[DAYS ]HH:MM-HH:MM\", e.g. \"Sat,Sun 02:00-05:00\"", e)
		}
		var ok bool
		if w.from, w.to, ok = timeRange(f[0]); !ok {
			return nil, fmt.Errorf("%q: want a time range like 02:00-05:00", e)
		}
		out = append(out, w)
	}
	return out, nil
}

// InWindow tells whether a sealed update may switch at t (device-local time); with no
// install.windows, always.
func (c *Config) InWindow(t time.Time) bool {
	ws, _ := parseWindows(c.Install.Windows)
	return len(ws) == 0 || inWindows(ws, t)
}

func inWindows(ws []installWindow, t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	for _, w := range ws {
		day := t.Weekday()
		if w.from > w.to && m < w.to {
			day = (day + 6) % 7 // the part after midnight belongs to the day the window began
		}
		if w.days != nil && !w.days[day] {
			continue
		}
		if covers(w.from, w.to, m) {
			return true
		}
	}
	return false
}

// NextWindow is the start of the next install window after t (zero when there are none).
func (c *Config) NextWindow(t time.Time) time.Time {
	ws, _ := parseWindows(c.Install.Windows)
	if len(ws) == 0 {
		return time.Time{}
	}
	t = t.Truncate(time.Minute).Add(time.Minute)
	for i := 0; i < 8*24*60; i++ { // a week and a day, minute by minute: cheap and exact
		if inWindows(ws, t) {
			return t
		}
		t = t.Add(time.Minute)
	}
	return time.Time{}
}

// RateFunc is the bandwidth cap of net.max_rate and net.schedule as a function of the time
// (now gives the device's clock; nil when neither is set): the schedule is parsed once, not
// on every body read.
func (c *Config) RateFunc(now func() time.Time) func(time.Time) int64 {
	if c.Net.MaxRate == 0 && len(c.Net.Schedule) == 0 {
		return nil
	}
	ws, _ := parseSchedule(c.Net.Schedule) // validated at load
	maxRate := int64(c.Net.MaxRate)
	return func(time.Time) int64 { return scheduledRate(ws, maxRate, now().Local()) }
}
