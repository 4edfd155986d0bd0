package main

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/internal/report"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/packaging/ramp"
	"github.com/ota-agent/ota-agent/testserver"
)

// The phased-rollout fleet (issue: fleet simulation): devices poll the real edge code every
// 6 h (aligned, with jitter) in metadata mode, decide on the release's signed ramp with the
// agent's own functions (ramp.Point, ramp.Decide), send their deferred MD5s in If-None-Match
// until their turn, and check again at it (plus up to 5 minutes), as the daemon does.

// rampDevice is one simulated gateway of the rollout fleet.
type rampDevice struct {
	device
	id       string
	deferred map[string]time.Time // md5 → turn (zero: halted)
	got      time.Time            // when it installed the release (zero: not yet)
	events   int                  // report events it produced
	bytes    int64                // report bytes it would post
}

type rampQueue = dueQueue[*rampDevice]

// rampRun is what one simulated rollout measured.
type rampRun struct {
	maxDev      float64 // the largest |installed share − ramp level| at any hour of the ramp, percentage points
	worstHour   int
	afterHalt   int // installs after the halt
	afterPoll   int // installs later than one poll interval after the halt
	haltLevel   float64
	stats       testserver.Stats
	requests    int64
	reportBytes float64 // per device per day
	installed   float64 // share of the fleet with the release at the end
}

func (b *bench) rollout() {
	n := 10000
	if b.quick {
		n = 1000
	}
	ramped := b.simulateRamp(n, true, false)
	halted := b.simulateRamp(n, true, true)
	plain := b.simulateRamp(n, false, false)
	hit := func(s testserver.Stats) float64 {
		return 100 * float64(s.EdgeHits) / float64(max(s.EdgeHits+s.EdgeMisses, 1))
	}
	b.add(row{fmt.Sprintf("rollout: %d devices, 6 h polls (aligned, jitter), a 48 h ramp starting one poll interval after publishing: installed share against the ramp, every hour", n),
		fmt.Sprintf("within %.2f pp (worst at hour %d of the ramp); %.1f%% installed at the end", ramped.maxDev, ramped.worstHour, ramped.installed),
		"the ramp's own level", "", "±2 pp", verdict(ramped.maxDev <= 2)})
	b.add(row{fmt.Sprintf("rollout: halted at %.1f%%", halted.haltLevel),
		fmt.Sprintf("%d installs after the halt, %d later than one poll interval after it", halted.afterHalt, halted.afterPoll),
		"", "", "none after one poll interval", verdict(halted.afterPoll == 0)})
	b.add(row{"rollout: edge hit ratio and origin requests over the 66 h",
		fmt.Sprintf("%.2f%% (origin: %d of %d requests)", hit(ramped.stats), ramped.stats.OriginRequests, ramped.requests),
		fmt.Sprintf("the same release un-ramped: %.2f%% (origin: %d of %d requests)", hit(plain.stats), plain.stats.OriginRequests, plain.requests),
		fmt.Sprintf("%.2f× the origin requests", float64(ramped.stats.OriginRequests)/float64(max(plain.stats.OriginRequests, 1))), "", ""})
	b.add(row{"rollout: device report bytes per device per day (installed and deferred events, one batch each)",
		fmt.Sprintf("%.0f B", ramped.reportBytes), fmt.Sprintf("un-ramped: %.0f B", plain.reportBytes), "", "", ""})
}

// simulateRamp runs the fleet from 6 h before the ramp starts to 12 h after it ends.
func (b *bench) simulateRamp(n int, ramped, halt bool) rampRun {
	const interval = 6 * time.Hour
	dir, cat, srv := b.sampleServer("rollout")
	defer srv.Close()
	publish := time.Date(2027, 1, 4, 2, 0, 0, 0, time.UTC)
	clk := &simClock{t: publish.Add(-interval)}
	srv.SetClock(clk.now)
	h := srv.Handler()
	rng := rand.New(rand.NewPCG(9, 9))
	q, all := newRampFleet(n, h, clk.now(), publish, interval, rng)
	start := publish.Add(interval) // the ramp starts one poll interval after publishing
	form := fmt.Sprintf("%d:100@%d", start.Unix(), int64(48*time.Hour/time.Second))
	r, _ := ramp.Parse(form)
	row := cat.Rows[5] // scoreboard prod
	row.Version, row.File = "1.1.0", "blobs/scoreboard_1.1.0"
	must(os.WriteFile(filepath.Join(dir, row.File), []byte(strings.Repeat("new scoreboard ", 70)), 0o644))
	if ramped {
		row.Class = packaging.Class{V: 2, Channel: "prod", Attrs: "gamer", Ramp: form}
	}
	end := start.Add(60 * time.Hour)
	var run rampRun
	var haltAt time.Time
	before := srv.Stats()
	published, hour := false, 0
	for q.Len() > 0 {
		d := heap.Pop(q).(*rampDevice)
		if d.next.After(end) {
			continue
		}
		for ; !start.Add(time.Duration(hour) * time.Hour).After(d.next); hour++ { // the hours passed: installed share against the ramp
			at := start.Add(time.Duration(hour) * time.Hour)
			if ramped && !halt && hour <= 48 {
				if dev := math.Abs(installedShare(all, at) - float64(r.Level(at))/1e4); dev > run.maxDev {
					run.maxDev, run.worstHour = dev, hour
				}
			}
		}
		if !published && !d.next.Before(publish) {
			published = true
			must(srv.SetRow(row))
		}
		if halt && haltAt.IsZero() && r.Level(d.next) >= 100_000 { // 10%
			haltAt, run.haltLevel = d.next, float64(r.Level(d.next))/1e4
			row.Class.Halted = haltAt.Unix()
			must(srv.SetRow(row))
		}
		clk.set(d.next)
		run.requests++
		had := d.got
		d.rampPoll(h, d.next, rng)
		if had.IsZero() && !d.got.IsZero() && !haltAt.IsZero() {
			run.afterHalt++
			if d.got.After(haltAt.Add(interval)) {
				run.afterPoll++
			}
		}
		d.next = agent.NextCheck(d.next, d.rampKey(d.next), interval, 30*time.Minute, true, rng)
		for _, turn := range d.deferred {
			if !turn.IsZero() && turn.Before(d.next) {
				d.next = turn.Add(time.Duration(rng.Int64N(int64(5 * time.Minute)))) // the daemon checks at the turn
			}
		}
		heap.Push(q, d)
	}
	after := srv.Stats()
	run.stats = testserver.Stats{EdgeHits: after.EdgeHits - before.EdgeHits, EdgeMisses: after.EdgeMisses - before.EdgeMisses,
		OriginRequests: after.OriginRequests - before.OriginRequests, OriginBytes: after.OriginBytes - before.OriginBytes}
	var bytes int64
	got := 0
	for _, d := range all {
		bytes += d.bytes
		if !d.got.IsZero() {
			got++
		}
	}
	run.installed = 100 * float64(got) / float64(n)
	run.reportBytes = float64(bytes) / float64(n) / (end.Sub(publish).Hours() / 24)
	return run
}

// newRampFleet makes n devices of one class but for their arch, channel and two attributes,
// all current before publish, each next due in its aligned minute of the interval.
func newRampFleet(n int, h http.Handler, now, publish time.Time, interval time.Duration, rng *rand.Rand) (*rampQueue, []*rampDevice) {
	q, all := &rampQueue{}, []*rampDevice{}
	for i := range n {
		d := &rampDevice{device: device{facts: agent.Facts{"cpuarch": pick(rng, 0.7, "armv8", "armv7"), "os": pick(rng, 0.9, "prod", "beta"), "attrgamer": "prod"},
			installed: map[string]string{}}, id: fmt.Sprintf("%032x", i), deferred: map[string]time.Time{}}
		for attr, p := range map[string]float64{"camera": 0.3, "cellular": 0.5} {
			if rng.Float64() < p {
				d.facts["attr"+attr] = "prod"
			}
		}
		d.rampPoll(h, now, nil)
		d.next = agent.NextCheck(publish.Add(-time.Duration(rng.Int64N(int64(interval)))), d.rampKey(now), interval, 30*time.Minute, true, rng)
		for d.next.Before(publish) {
			d.next = d.next.Add(interval)
		}
		heap.Push(q, d)
		all = append(all, d)
	}
	return q, all
}

// installedShare is the percentage of the fleet holding the release at t.
func installedShare(all []*rampDevice, t time.Time) float64 {
	got := 0
	for _, x := range all {
		if !x.got.IsZero() && !x.got.After(t) {
			got++
		}
	}
	return 100 * float64(got) / float64(len(all))
}

// rampPoll is one metadata check at now: the deferred MD5s still waiting go out with the
// installed ones; a release whose ramp has reached the device is installed (bookkeeping), one
// it has not is deferred until the device's turn.
func (d *rampDevice) rampPoll(h http.Handler, now time.Time, rng *rand.Rand) {
	_, inm := d.request(now)
	req := httptest.NewRequest("GET", "/package?"+d.facts.Query("metadataonly"), nil)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return
	}
	det, err := packaging.DecodeDetails(rec.Body)
	if err != nil {
		return
	}
	var events []report.Event
	for _, app := range det.Apps {
		e := det.Entries[app]
		if e.StatusCode != 200 || e.MD5 == "" {
			continue
		}
		ph, err := e.Class.Phase(ramp.Point(d.id, app, e.LatestVersion), now)
		if err != nil {
			continue
		}
		if !ph.In {
			if _, seen := d.deferred[e.MD5]; !seen {
				until := ph.Turn
				events = append(events, report.Event{ID: d.id + "/deferred/" + e.MD5, Kind: report.Deferred, Time: now, Apps: map[string]string{app: e.LatestVersion}, Until: &until, Percent: float64(ph.Level) / 1e4})
			}
			d.deferred[e.MD5] = ph.Turn
			continue
		}
		delete(d.deferred, e.MD5)
		d.installed[app] = e.MD5
		if app == "scoreboard" && e.LatestVersion == "1.1.0" && d.got.IsZero() && rng != nil {
			d.got = now
		}
		events = append(events, report.Event{ID: d.id + "/installed/" + e.MD5, Kind: report.Installed, Time: now, Apps: map[string]string{app: e.LatestVersion}, Slot: "b"})
	}
	if len(events) > 0 && rng != nil {
		b := report.Batch{V: 1, Device: d.id, Agent: "ota-agent/bench", Sent: now}
		for _, e := range events {
			raw, _ := json.Marshal(e)
			b.Events = append(b.Events, raw)
		}
		raw, _ := json.Marshal(b)
		d.events, d.bytes = d.events+len(events), d.bytes+int64(len(raw))
	}
}

// request is the device's canonical query and If-None-Match at now: installed MD5s and the
// deferrals whose turn has not come.
func (d *rampDevice) request(now time.Time) (string, string) {
	var md5s []string
	for _, m := range d.installed {
		md5s = append(md5s, m)
	}
	for m, turn := range d.deferred {
		if !turn.IsZero() && now.Before(turn) {
			md5s = append(md5s, m)
		}
	}
	return d.facts.Query("metadataonly"), packaging.SortedMD5s(md5s)
}

func (d *rampDevice) rampKey(now time.Time) string {
	q, inm := d.request(now)
	return q + "\x00" + inm
}
