package ramp

import (
	"fmt"
	"testing"
	"time"
)

func TestForms(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	for spec, want := range map[string]string{
		"48h":                    "1800000000:100@172800",
		"2d":                     "1800000000:100@172800",
		"1%:2h,10%:12h,100%:48h": "1800000000:1@7200,10@43200,100@172800",
		"0.5%:1h,100%:1h":        "1800000000:0.5@3600,100@3600",
		"12.3456%:0s,100%:10m":   "1800000000:12.3456@0,100@600",
	} {
		r, err := Spec(spec, start)
		if err != nil || r.String() != want {
			t.Errorf("Spec(%q) = %q, %v; want %q", spec, r.String(), err, want)
			continue
		}
		if back, err := Parse(want); err != nil || back.String() != want {
			t.Errorf("Parse(%q) = %q, %v", want, back.String(), err)
		}
	}
	for _, bad := range []string{"", "0:100@10", "x:100@1", "1800000000:", "1800000000:50@10", "1800000000:50@10,40@20,100@30",
		"1800000000:50@20,100@10", "1800000000:100.00001@1", "1800000000:101@1", "1800000000:100@-1", "1800000000:1.50@1,100@2",
		"1800000000:01@1,100@2", "1800000000:+1@1,100@2", "1800000000:100@1,"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "48", "1%:2h,10%:1h,100%:3h", "50%:2h", "1:2h,100%:3h", "100%:-1h"} {
		if _, err := Spec(bad, start); err == nil {
			t.Errorf("Spec(%q) accepted", bad)
		}
	}
}

// Turn is exactly the first second a device's point is below the level.
func TestTurnMatchesLevel(t *testing.T) {
	for _, s := range []string{"1800000000:100@172800", "1800000000:1@7200,10@43200,100@172800", "1800000000:0.5@3600,100@3600", "1800000000:30@0,100@600"} {
		r, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2000; i++ {
			p := Point(fmt.Sprint("device-", i), "app", "1.0")
			turn := r.Turn(p)
			if r.Level(turn) <= p || turn.Unix() > r.Start && r.Level(turn.Add(-time.Second)) > p {
				t.Fatalf("%s: point %d: turn %v, level there %d, a second before %d", s, p, turn.Unix()-r.Start, r.Level(turn), r.Level(turn.Add(-time.Second)))
			}
		}
	}
}

// Points spread evenly, differ between devices and releases, and never change for one.
func TestPointsSpread(t *testing.T) {
	const n = 100_000
	buckets := make([]int, 10)
	for i := 0; i < n; i++ {
		p := Point(fmt.Sprintf("%032x", i), "scoreboard", "2.0.0")
		if p < 0 || p >= Full {
			t.Fatalf("point %d out of range", p)
		}
		buckets[p*10/Full]++
	}
	for i, b := range buckets {
		if b < n/10*95/100 || b > n/10*105/100 {
			t.Errorf("decile %d holds %d of %d points", i, b, n)
		}
	}
	a, b := Point("machine-a", "scoreboard", "2.0.0"), Point("machine-b", "scoreboard", "2.0.0")
	if a == b || a != Point("machine-a", "scoreboard", "2.0.0") || a == Point("machine-a", "scoreboard", "2.0.1") {
		t.Errorf("points: a %d, b %d, a again %d, a of another release %d", a, b, Point("machine-a", "scoreboard", "2.0.0"), Point("machine-a", "scoreboard", "2.0.1"))
	}
}
