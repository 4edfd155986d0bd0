// Package ramp is a phased rollout's schedule (protocol.md 3.10): the share of a fleet that
// may install a release as a function of time, in the form a v2 statement signs, and the
// stable point each device stands at in it. Each device decides for itself from its point, so
// no server needs to know devices, and the decision is as trustworthy as the signature over
// the ramp.
package ramp

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Full is the whole fleet in millionths (a ramp's levels).
const Full = 1_000_000

// maxSteps bounds a ramp's points.
const maxSteps = 64

// Step: Level millionths of the fleet by At seconds after the ramp's start.
type Step struct {
	Level int64
	At    int64
}

// Ramp is a piecewise-linear share of the fleet from 0 at Start through each step; the last
// step is the whole fleet.
type Ramp struct {
	Start int64 // unix seconds
	Steps []Step
}

// ParseRamp reads the signed form `<start unix>:<percent>@<seconds>,...`, e.g.
// `1733400000:1@7200,10@43200,100@172800`: 1% by 2 h after the start, 10% by 12 h, everyone
// by 48 h, linear in between. Percents have at most 4 decimals; times and percents never go
// down; the last percent is 100.
func Parse(s string) (Ramp, error) {
	start, steps, ok := strings.Cut(s, ":")
	r := Ramp{}
	var err error
	if r.Start, err = strconv.ParseInt(start, 10, 64); !ok || err != nil || r.Start <= 0 {
		return r, fmt.Errorf("ramp %q: want <start unix time>:<percent>@<seconds>[,<percent>@<seconds>]", s)
	}
	for _, step := range strings.Split(steps, ",") {
		pct, at, ok := strings.Cut(step, "@")
		level, perr := parsePercent(pct)
		secs, serr := strconv.ParseInt(at, 10, 64)
		if !ok || perr != nil || serr != nil || secs < 0 || secs > 100*365*86400 {
			return r, fmt.Errorf("ramp %q: step %q: want <percent>@<seconds after the start>", s, step)
		}
		if n := len(r.Steps); n > 0 && (level < r.Steps[n-1].Level || secs < r.Steps[n-1].At) {
			return r, fmt.Errorf("ramp %q: step %q goes back (percents and times never decrease)", s, step)
		}
		r.Steps = append(r.Steps, Step{Level: level, At: secs})
	}
	if len(r.Steps) > maxSteps {
		return r, fmt.Errorf("ramp %q: more than %d steps", s, maxSteps)
	}
	if r.Steps[len(r.Steps)-1].Level != Full {
		return r, fmt.Errorf("ramp %q: the last step must reach 100%%", s)
	}
	if r.String() != s {
		return r, fmt.Errorf("ramp %q is not in canonical form (%q)", s, r.String())
	}
	return r, nil
}

// parsePercent reads 0 to 100 with at most 4 decimals, as millionths.
func parsePercent(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 4 || strings.HasPrefix(whole, "+") || strings.HasPrefix(whole, "-") {
		return 0, errors.New("bad percent")
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > 100 {
		return 0, errors.New("bad percent")
	}
	f := int64(0)
	if frac != "" {
		if f, err = strconv.ParseInt(frac+strings.Repeat("0", 4-len(frac)), 10, 64); err != nil || f < 0 {
			return 0, errors.New("bad percent")
		}
	}
	v := w*10_000 + f
	if v > Full {
		return 0, errors.New("over 100%")
	}
	return v, nil
}

// percent writes millionths as a percent without trailing zeros.
func percent(level int64) string {
	s := strconv.FormatInt(level/10_000, 10)
	if f := level % 10_000; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%04d", f), "0")
	}
	return s
}

// String is the signed form (Parse).
func (r Ramp) String() string {
	parts := make([]string, len(r.Steps))
	for i, st := range r.Steps {
		parts[i] = percent(st.Level) + "@" + strconv.FormatInt(st.At, 10)
	}
	return strconv.FormatInt(r.Start, 10) + ":" + strings.Join(parts, ",")
}

// Describe is the ramp as a person reads it: "1% by +2h, 10% by +12h, 100% by +48h from <start>".
func (r Ramp) Describe() string {
	parts := make([]string, len(r.Steps))
	for i, st := range r.Steps {
		parts[i] = percent(st.Level) + "% by +" + (time.Duration(st.At) * time.Second).String()
	}
	return strings.Join(parts, ", ") + " from " + time.Unix(r.Start, 0).UTC().Format(time.RFC3339)
}

// RampSpec reads what a publisher types: a duration ("48h", "2d": linear to 100%), or steps
// "1%:2h,10%:12h,100%:48h" (percent of the fleet by that long after start; linear in between).
func Spec(spec string, start time.Time) (Ramp, error) {
	r := Ramp{Start: start.Unix()}
	if !strings.Contains(spec, "%") {
		spec = "100%:" + spec
	}
	for _, step := range strings.Split(spec, ",") {
		pct, dur, ok := strings.Cut(step, ":")
		level, perr := parsePercent(strings.TrimSuffix(strings.TrimSpace(pct), "%"))
		d, derr := parseDays(strings.TrimSpace(dur))
		if !ok || !strings.HasSuffix(strings.TrimSpace(pct), "%") || perr != nil || derr != nil || d < 0 {
			return r, fmt.Errorf("ramp %q: want a duration (48h, 2d) or steps PERCENT%%:DURATION,... (1%%:2h,10%%:12h,100%%:48h)", spec)
		}
		r.Steps = append(r.Steps, Step{Level: level, At: int64(d / time.Second)})
	}
	_, err := Parse(r.String())
	return r, err
}

// parseDays is time.ParseDuration with whole days ("2d") too.
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days < 0 || days > 3650 {
			return 0, fmt.Errorf("bad days %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// Level is the share of the fleet in at t, in millionths.
func (r Ramp) Level(t time.Time) int64 {
	at := t.Unix() - r.Start
	if at < 0 {
		return 0
	}
	prev := Step{}
	for _, st := range r.Steps {
		if at < st.At {
			return prev.Level + (st.Level-prev.Level)*(at-prev.At)/(st.At-prev.At)
		}
		prev = st
	}
	return prev.Level
}

// Turn is the first second at which the ramp's level passes point (a device is in once
// Level > its point).
func (r Ramp) Turn(point int64) time.Time {
	prev := Step{}
	for _, st := range r.Steps {
		if st.Level > point {
			d := int64(0)
			if st.At > prev.At {
				d = ceilDiv((point+1-prev.Level)*(st.At-prev.At), st.Level-prev.Level)
			}
			return time.Unix(r.Start+prev.At+d, 0)
		}
		prev = st
	}
	return time.Unix(r.Start+prev.At, 0) // not reached: the last step is the whole fleet
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// Point is where a device stands in the ramps of a release: the first 8 bytes of
// SHA-256("ota-ramp-v1\n<device id>\n<app>\n<version>\n") scaled to [0, Full). The same device
// always has the same point for a release, different devices (and releases) spread evenly.
func Point(deviceID, app, version string) int64 {
	h := sha256.Sum256([]byte("ota-ramp-v1\n" + deviceID + "\n" + app + "\n" + version + "\n"))
	hi, _ := bits.Mul64(binary.BigEndian.Uint64(h[:8]), Full)
	return int64(hi)
}

// Phase is what a ramp says to one device about one release now.
type Phase struct {
	In     bool      // it may install
	Halted bool      // the rollout is halted: it waits for a resume (or another release)
	Turn   time.Time // when it may (not halted)
	Level  int64     // the ramp's level now, millionths
	Point  int64     // the device's point
}

// Decide is what a signed ramp (Parse's form, "" for none) and a halt time (0: running) say
// to the device with point p at now. A statement without a ramp lets every
// device in. A halted ramp keeps out every device that does not have the release yet.
func Decide(signed string, halted int64, p int64, now time.Time) (Phase, error) {
	if signed == "" {
		return Phase{In: halted == 0, Halted: halted != 0, Level: Full, Point: p}, nil
	}
	r, err := Parse(signed)
	if err != nil {
		return Phase{}, err
	}
	ph := Phase{Level: r.Level(now), Point: p, Halted: halted != 0}
	if ph.Halted {
		ph.Level = r.Level(time.Unix(halted, 0))
		return ph, nil
	}
	ph.In = p < ph.Level
	if !ph.In {
		ph.Turn = r.Turn(p)
	}
	return ph, nil
}
