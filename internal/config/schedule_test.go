package config

import (
	"strings"
	"testing"
	"time"
)

// Windows parse with days and across midnight; the next one is found.
func TestInstallWindows(t *testing.T) {
	c := &Config{}
	c.Install.Windows = []string{"Sat,Sun 23:00-02:00", "Wed 12:00-12:30"}
	at := func(d, h, m int) time.Time { return time.Date(2026, 11, 28+d, h, m, 0, 0, time.Local) } // 28 Nov 2026: a Saturday
	for _, x := range []struct {
		t    time.Time
		want bool
	}{{at(0, 23, 30), true}, {at(1, 1, 0), true}, {at(2, 1, 0), true}, {at(2, 23, 0), false}, {at(0, 12, 0), false}, {at(4, 12, 10), true}, {at(4, 12, 30), false}} {
		if got := c.InWindow(x.t); got != x.want {
			t.Errorf("%v: %v, want %v", x.t.Format("Mon 15:04"), got, x.want)
		}
	}
	if next := c.NextWindow(at(2, 9, 0)); !next.Equal(at(4, 12, 0)) {
		t.Errorf("next window after Mon 09:00: %v", next)
	}
	for _, bad := range []string{"Someday 02:00-03:00", "02:00", "25:00-26:00"} {
		if _, err := parseWindows([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	c.Install.Windows = nil
	if !c.InWindow(at(0, 12, 0)) || !c.NextWindow(at(0, 12, 0)).IsZero() {
		t.Error("no windows: any time")
	}
}
