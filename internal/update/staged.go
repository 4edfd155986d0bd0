package update

import (
	"cmp"
	"context"
	"fmt"

	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/store"
)

// Maintenance windows (install.windows): outside a window a sealed generation is recorded as
// staged (park) and the run ends (await-window); it switches when a window opens (the daemon
// wakes for it) or on `ota-agent apply`.

// stagedGeneration is the generation waiting for an install window, when the inactive slot
// still holds it sealed (else the record is dropped).
func (a *Engine) stagedGeneration(db *store.DB) (*store.Generation, error) {
	g, err := db.Staged()
	if err != nil || g == nil {
		return nil, err
	}
	active, _ := a.Slots.Active()
	if m, merr := a.Slots.Manifest(g.Slot); merr != nil || m.Generation != g.N || g.Slot == active {
		a.Log.Warn("dropping a staged generation its slot no longer holds", "slot", g.Slot, "generation", g.N)
		return nil, db.SetStaged(nil)
	}
	return g, nil
}

// ApplyStaged switches a staged generation: from its install window (the daemon and check
// call it first), or now with force (`ota-agent apply`). It returns nil, nil when there is
// nothing staged or the window is closed.
func (a *Engine) ApplyStaged(ctx context.Context, db *store.DB, force bool) (*result.Result, error) {
	g, err := a.stagedGeneration(db)
	if err != nil || g == nil || !force && !a.Cfg.InWindow(a.now(db).Local()) {
		return nil, err
	}
	state, err := db.State()
	if err != nil {
		return nil, err
	}
	res := &result.Result{Result: result.Updated, Slot: g.Slot, Apps: map[string]result.AppResult{}}
	for app, x := range g.Apps {
		res.Apps[app] = result.AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
	}
	a.Log.Info("applying the staged generation", "slot", g.Slot, "generation", g.N, "forced", force)
	j, err := a.newJob(db, nil, store.Journal{Next: g, Apply: true})
	if err != nil {
		return nil, err
	}
	j.State, j.res, j.DirChange = state, res, true
	if err := j.run(ctx, AwaitWindow); err != nil {
		return nil, err
	}
	cur, err := db.State()
	if err != nil {
		return nil, err
	}
	if cur == nil || cur.N != g.N {
		return res, fmt.Errorf("%w (%s)", ErrRolledBack, cmp.Or(j.rec.Reason, "health check failed"))
	}
	res.Switched = true
	return res, nil
}
