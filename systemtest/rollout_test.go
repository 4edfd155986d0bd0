//go:build system

package systemtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/packaging/ramp"
	"github.com/ota-agent/ota-agent/testserver"
)

// phasedRollout: a release of one app goes out with a signed ramp that reaches this board's
// point (from its /etc/machine-id) a minute later. Checked now, the board defers it without
// fetching a byte of it; the daemon then checks by itself at its turn (within poll.jitter,
// 20 s in the test image) and installs it; both outcomes reach the receiver of device
// reports, and the fleet view counts them.
func phasedRollout(r *rig) error {
	id := strings.TrimSpace(r.sh("cat /etc/machine-id").Output)
	if len(id) != 32 {
		return fmt.Errorf("no machine id on the board: %q", id)
	}
	const app, span = "logger", 1000 // the ramp: 0 to 100% over span seconds
	r.gen++
	version := fmt.Sprintf("1.%d", r.gen)
	rel := "blobs/" + app + "_" + version
	buf := make([]byte, appSize)
	for i := range buf {
		buf[i] = byte(r.rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(r.work, "catalog", rel), buf, 0o644); err != nil {
		return err
	}
	offset := time.Duration((ramp.Point(id, app, version)+1)*span/ramp.Full+1) * time.Second
	turn := time.Now().Add(60 * time.Second).Truncate(time.Second)
	form := fmt.Sprintf("%d:100@%d", turn.Add(-offset).Unix(), span)
	if rp, _ := ramp.Parse(form); true {
		turn = rp.Turn(ramp.Point(id, app, version))
	}
	r.serials[app]++
	row := testserver.Row{App: app, Env: "prod", Version: version, File: rel, Serial: r.serials[app], DeviceAttr: map[string]bool{"gw": true}}
	row.Class.Ramp = form
	row, err := r.srv.Catalog().SignRow(row, r.priv)
	if err != nil {
		return err
	}
	if err := r.srv.SetRow(row); err != nil {
		return err
	}
	r.srv.FlushEdge()
	r.apps[app] = version

	st, err := r.trigger("rollout", func(s *status) bool { return len(s.Deferred) == 1 })
	if err != nil {
		return fmt.Errorf("deferral: %w", err)
	}
	for _, d := range st.Deferred {
		if d.App != app || d.Version != version || !d.Turn.Equal(turn) {
			return fmt.Errorf("deferred %+v, want %s %s until %v", d, app, version, turn)
		}
	}
	if n := r.count("/firmware/" + app + "_" + version); n != 0 {
		return fmt.Errorf("%d requests for the deferred release's binary", n)
	}
	r.logf("  deferred %s %s until its turn %s (in %v); no byte of it fetched", app, version, turn.UTC().Format(time.TimeOnly), time.Until(turn).Round(time.Second))
	st, err = r.settle("rollout-turn", time.Until(turn)+10*time.Minute, func(s *status) bool {
		return s.Apps[app].Version == version && s.LastCheck != nil && s.LastCheck.Result == "updated" // recorded after its trial
	})
	if err != nil {
		return fmt.Errorf("not installed at its turn: %w", err)
	}
	if st.LastCheck.Time.Before(turn) {
		return fmt.Errorf("installed by a check at %v, before its turn %v", st.LastCheck.Time, turn)
	}
	r.logf("  installed at %s by the daemon's own check at its turn (%s after it)", st.LastCheck.Time.UTC().Format(time.TimeOnly), st.LastCheck.Time.Sub(turn).Round(time.Second))
	return r.fleetSees(app, version)
}

// fleetSees wants the receiver to hold the board's deferral and install of app version once
// each, and prints the fleet view's line of the release.
func (r *rig) fleetSees(app, version string) error {
	kinds := map[string]int{}
	end := time.Now().Add(3 * time.Minute) // the install's report goes out after its check
	for time.Now().Before(end) && (kinds["deferred"] == 0 || kinds["installed"] == 0) {
		kinds = map[string]int{}
		for _, s := range r.srv.Reports().Snapshot().Events {
			var e struct {
				Kind string            `json:"kind"`
				Apps map[string]string `json:"apps"`
			}
			if json.Unmarshal(s.Event, &e) == nil && e.Apps[app] == version {
				kinds[e.Kind]++
			}
		}
		time.Sleep(2 * time.Second)
	}
	if kinds["deferred"] != 1 || kinds["installed"] != 1 {
		return fmt.Errorf("the receiver holds %v about %s %s, want one deferral and one install", kinds, app, version)
	}
	cmd := exec.Command("go", "run", "./cmd/ota-release", "fleet", "--url", r.base+"/reports")
	cmd.Dir = r.repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ota-release fleet: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, app+" "+version) || strings.HasPrefix(l, "RELEASE") {
			r.logf("  fleet: %s", strings.Join(strings.Fields(l), " "))
		}
	}
	return nil
}
