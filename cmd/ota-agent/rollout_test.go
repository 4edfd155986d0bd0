package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging/ramp"
	"github.com/ota-agent/ota-agent/testserver"
)

// rolloutResult is what check --once --json says about phased rollouts.
type rolloutResult struct {
	Result   string `json:"result"`
	Bytes    int64  `json:"bytes"`
	Apps     map[string]struct{ Version string }
	Deferred []struct {
		App    string    `json:"app"`
		Turn   time.Time `json:"turn"`
		Halted bool      `json:"halted"`
	} `json:"deferred"`
}

// gateway is one more device of the world: its own state directory and identity.
type gateway struct {
	w   *world
	env []string
}

func (w *world) gateway(id string) gateway {
	dir := filepath.Join(w.dir, "gw-"+id)
	return gateway{w: w, env: []string{"OTA_AGENT_DEVICE_ID=" + id, "OTA_AGENT_STATE_DIR=" + dir, "OTA_AGENT_RUNTIME_DIR=" + dir + ".run"}}
}

// check runs check --once --json at time at.
func (g gateway) check(at time.Time) (outcome, rolloutResult) {
	g.w.t.Helper()
	r := g.w.agent(append(g.env, "OTA_AGENT_TEST_NOW="+at.UTC().Format(time.RFC3339)), "check", "--once", "--json")
	var res rolloutResult
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			g.w.t.Fatalf("check --json: %v\n%s", err, r.stdout)
		}
	}
	return r, res
}

// publishRamped publishes scoreboard (prod) at version with a signed ramp (and halt time).
func (w *world) publishRamped(version string, data []byte, serial int64, rampForm string, halted int64) testserver.Row {
	w.t.Helper()
	r := w.row("scoreboard", "prod")
	if r.Version != version {
		r.Version, r.Serial, r.File = version, serial, "blobs/scoreboard_"+version
		os.WriteFile(filepath.Join(w.cat.Dir(), r.File), data, 0o644)
	}
	r.Class.Ramp, r.Class.Halted = rampForm, halted
	r, err := w.cat.SignRow(r, w.privPEM)
	if err != nil {
		w.t.Fatal(err)
	}
	w.srv.SetRow(r)
	w.srv.FlushEdge()
	return r
}

// Phased rollouts (protocol.md 3.10), in full-payload mode: a device outside the signed ramp
// defers without a byte of the release (one metadata request; the next checks are 304s by
// the deferred MD5), checks again at its turn and installs; two devices have different
// turns, each always the same; a halt keeps out a device not yet in while one already on the
// release keeps it; a tampered ramp fails the signature; a resume goes on from where it
// stopped.
func TestPhasedRollout(t *testing.T) {
	w := newWorld(t, 256<<10, "")
	t0 := time.Now().Add(time.Hour).Truncate(time.Second)
	const span = 10_000 // seconds from 0 to the whole fleet
	form := fmt.Sprintf("%d:100@%d", t0.Unix(), span)
	ids := []string{"gw-1", "gw-2", "gw-3", "gw-4", "gw-5", "gw-6"}
	turn := func(id string) time.Time {
		r, _ := ramp.Parse(form)
		return r.Turn(ramp.Point(id, "scoreboard", "1.1.0"))
	}
	// a: early, b: late (far enough apart for a halt between them)
	a, b := ids[0], ids[0]
	for _, id := range ids {
		if turn(id).Before(turn(a)) {
			a = id
		}
		if turn(id).After(turn(b)) {
			b = id
		}
	}
	if turn(b).Sub(turn(a)) < 200*time.Second {
		t.Fatalf("turns too close: %v, %v", turn(a), turn(b))
	}
	A, B := w.gateway(a), w.gateway(b)
	for _, g := range []gateway{A, B} {
		if r, _ := g.check(t0.Add(-time.Minute)); r.code != 0 {
			t.Fatalf("first install: exit %d\n%s", r.code, r.stderr)
		}
	}
	w.publishRamped("1.1.0", randomBytes(256<<10, 31), 50, form, 0)

	before := w.srv.Stats()
	r, res := A.check(turn(a).Add(-time.Minute))
	after := w.srv.Stats()
	if r.code != 0 || res.Apps["scoreboard"].Version != "1.0.0" || len(res.Deferred) != 1 || !res.Deferred[0].Turn.Equal(turn(a)) || res.Bytes != 0 {
		t.Fatalf("before its turn: exit %d, %+v (turn %v)\n%s%s", r.code, res, turn(a), r.stdout, r.stderr)
	}
	if n := after.RequestsByPath["/package"] - before.RequestsByPath["/package"]; n != 1 || after.BytesByPath["/package"]-before.BytesByPath["/package"] > 4096 {
		t.Fatalf("deferring cost %d requests, %d bytes; want the metadata answer alone", n, after.BytesByPath["/package"]-before.BytesByPath["/package"])
	}
	if r, res := A.check(turn(a).Add(-30 * time.Second)); r.code != 0 || len(res.Deferred) != 1 || w.srv.Stats().StatusCounts["304"] <= after.StatusCounts["304"] {
		t.Fatalf("a check while deferred: exit %d, %+v, 304s %d → %d\n%s", r.code, res, after.StatusCounts["304"], w.srv.Stats().StatusCounts["304"], r.stderr)
	}
	if r, res := A.check(turn(a).Add(time.Second)); r.code != 0 || res.Result != "updated" || res.Apps["scoreboard"].Version != "1.1.0" || len(res.Deferred) != 0 {
		t.Fatalf("at its turn: exit %d, %+v\n%s", r.code, res, r.stderr)
	}

	// Halted between a's turn and b's: b stays out at its turn, a keeps 1.1.0.
	halt := turn(a).Add(turn(b).Sub(turn(a)) / 2)
	w.publishRamped("1.1.0", nil, 0, form, halt.Unix())
	if r, res := B.check(turn(b).Add(time.Second)); r.code != 0 || res.Apps["scoreboard"].Version != "1.0.0" || len(res.Deferred) != 1 || !res.Deferred[0].Halted {
		t.Fatalf("halted, at its turn: exit %d, %+v\n%s", r.code, res, r.stderr)
	}
	if st := w.agent(B.env, "status"); !strings.Contains(st.stdout, "rollout is halted") {
		t.Fatalf("status of a halted deferral:\n%s", st.stdout)
	}
	if r, res := A.check(turn(b).Add(2 * time.Second)); r.code != 0 || res.Apps["scoreboard"].Version != "1.1.0" {
		t.Fatalf("a device on the halted release: exit %d, %+v\n%s", r.code, res, r.stderr)
	}

	// A mirror that strips the halt (the signature stays) is refused, nothing changes.
	tampered := w.row("scoreboard", "prod")
	tampered.Class.Halted = 0
	w.srv.SetRow(tampered)
	w.srv.FlushEdge()
	if r, _ := B.check(turn(b).Add(3 * time.Second)); r.code != 4 || !strings.Contains(r.stderr, "signature does not verify") {
		t.Fatalf("a stripped halt: exit %d\n%s", r.code, r.stderr)
	}

	// Resumed: the ramp's start moves by the time it was halted; b's turn moves with it.
	resume := turn(b).Add(100 * time.Second)
	rp, _ := ramp.Parse(form)
	rp.Start += resume.Unix() - halt.Unix()
	w.publishRamped("1.1.0", nil, 0, rp.String(), 0)
	newTurn := rp.Turn(ramp.Point(b, "scoreboard", "1.1.0"))
	if r, res := B.check(resume.Add(time.Second)); r.code != 0 || len(res.Deferred) != 1 || !res.Deferred[0].Turn.Equal(newTurn) {
		t.Fatalf("resumed, before its new turn %v: exit %d, %+v\n%s", newTurn, r.code, res, r.stderr)
	}
	if r, res := B.check(newTurn.Add(time.Second)); r.code != 0 || res.Apps["scoreboard"].Version != "1.1.0" {
		t.Fatalf("resumed, at its new turn: exit %d, %+v\n%s", r.code, res, r.stderr)
	}
}

// In metadata mode the release's statement is checked before its binary is fetched: a device
// before its turn fetches nothing from the firmware CDN (a dry run says it would defer), and
// installs at its turn.
func TestPhasedRolloutMetadata(t *testing.T) {
	w := newWorld(t, 256<<10, "#metadata")
	t0 := time.Now().Add(time.Hour).Truncate(time.Second)
	form := fmt.Sprintf("%d:1@0,100@10000", t0.Unix())
	g := w.gateway("gw-meta")
	if r, _ := g.check(t0.Add(-time.Minute)); r.code != 0 {
		t.Fatalf("first install: exit %d\n%s", r.code, r.stderr)
	}
	w.publishRamped("1.1.0", randomBytes(256<<10, 32), 50, form, 0)
	rp, _ := ramp.Parse(form)
	turn := rp.Turn(ramp.Point("gw-meta", "scoreboard", "1.1.0"))
	dry := w.agent(append(g.env, "OTA_AGENT_TEST_NOW="+turn.Add(-time.Second).UTC().Format(time.RFC3339)), "check", "--once", "--dry-run")
	if dry.code != 0 || !strings.Contains(dry.stdout, "defer    scoreboard") || strings.Contains(dry.stdout, "download scoreboard") {
		t.Fatalf("a dry run before the turn: exit %d\n%s%s", dry.code, dry.stdout, dry.stderr)
	}
	before := w.srv.Stats().BytesByPath["/firmware"]
	if r, res := g.check(turn.Add(-time.Second)); r.code != 0 || len(res.Deferred) != 1 || w.srv.Stats().BytesByPath["/firmware"] != before {
		t.Fatalf("before its turn %v: exit %d, %+v, firmware bytes %d → %d\n%s", turn, r.code, res, before, w.srv.Stats().BytesByPath["/firmware"], r.stderr)
	}
	if r, res := g.check(turn); r.code != 0 || res.Apps["scoreboard"].Version != "1.1.0" {
		t.Fatalf("at its turn %v: exit %d, %+v\n%s", turn, r.code, res, r.stderr)
	}
}
