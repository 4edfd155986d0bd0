package update

import (
	"context"
	"maps"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/assemble"
	"github.com/ota-agent/ota-agent/internal/osimage"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Current is what the device has and says: the installed set (directory slots and OS
// partitions), its facts, and the If-None-Match it sends.
type Current struct {
	State     *store.State
	Installed map[string]store.App
	Facts     protocol.Facts
	INM       string
}

func (a *Engine) Current(db *store.DB) (*Current, error) {
	state, err := db.State()
	if err != nil {
		return nil, err
	}
	c := &Current{State: state, Installed: map[string]store.App{}}
	if state != nil {
		for app, x := range state.Apps {
			c.Installed[app] = x
		}
	}
	osApps, trying, err := osimage.Installed(db)
	if err != nil {
		return nil, err
	}
	for app, x := range osApps {
		c.Installed[app] = x
	}
	if c.Facts, err = a.deviceFacts(); err != nil {
		return nil, err
	}
	refused, err := db.Refusals()
	if err != nil {
		return nil, err
	}
	g, err := db.Staged()
	if err != nil {
		return nil, err
	}
	if g != nil {
		for _, x := range g.Apps {
			trying = append(trying, x.MD5) // staged: waiting for its window
		}
	}
	deferred, err := db.Deferred()
	if err != nil {
		return nil, err
	}
	for m, d := range deferred {
		if d.Pending(a.Clock.Now()) {
			trying = append(trying, m) // a phased rollout's turn not come: left out until then
		}
	}
	for _, m := range append(trying, a.Proto.ShadowMD5s(db, c.Facts)...) {
		refused[m] = store.Refusal{} // on its way in, shadowed by a pin, or deferred: not to be sent again
	}
	claimed := maps.Clone(c.Installed)
	if state != nil {
		for app := range state.Damaged {
			delete(claimed, app) // found damaged on disk: the server sends it again
		}
	}
	c.INM = protocol.Etags(claimed, refused)
	return c, nil
}

// ManifestState is the record of slot s rebuilt from its manifest.
func ManifestState(s string, m *installer.Manifest, now time.Time) *store.State {
	return &store.State{Generation: store.Generation{N: m.Generation, Slot: s, Apps: m.Apps}, Status: store.StatusCommitted, Since: now}
}

// deviceFacts are the facts the configuration and the device's probes give.
func (a *Engine) deviceFacts() (protocol.Facts, error) {
	f, err := a.Cfg.DeviceFacts()
	return protocol.Facts(f), err
}

// NextTurn is the earliest moment a release deferred by a phased rollout may be installed on
// this device (zero: none waits): the daemon checks then rather than at its next poll.
func (a *Engine) NextTurn(db *store.DB) time.Time {
	deferred, _ := db.Deferred()
	var next time.Time
	for _, d := range deferred {
		if d.Pending(a.Clock.Now()) && (next.IsZero() || d.Turn.Before(next)) {
			next = d.Turn
		}
	}
	return next
}

// DryDefer marks in a dry run's plan the releases phased rollouts keep from this device, as a
// check would (assemble.Defer), recording nothing.
func (a *Engine) DryDefer(ctx context.Context, db *store.DB, facts protocol.Facts, d *packaging.Details, installed map[string]store.App, plan *protocol.Plan) {
	if len(a.Keys) > 0 {
		as := assemble.Assembly{Env: a.env(facts), DB: db, Details: d, Plan: plan, Installed: installed}
		as.DeferDry(ctx)
	}
}
