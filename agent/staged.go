package agent

import (
	"cmp"
	"context"
	"fmt"

	"github.com/ota-agent/ota-agent/store"
)

// Maintenance windows (install.windows): outside a window a sealed generation is recorded as
// staged and the run ends; it switches when a window opens (the daemon wakes for it) or on
// `ota-agent apply`.

// stageSealed records the sealed generation as staged: it survives a restart and waits
// there for an install window (or `ota-agent apply`).
func (j *job) stageSealed(context.Context) (State, error) {
	return Staged, j.db.SetStaged(j.next)
}

// journal switches a staged generation when the install window (or apply) allows: the
// switch is journalled first. Outside a window the run ends here.
func (j *job) journal(context.Context) (State, error) {
	if !j.apply && !j.a.cfg.inWindow(j.a.now(j.db).Local()) {
		j.res.Result = ResultStaged
		j.done = true
		next := j.a.cfg.nextWindow(j.a.now(j.db).Local())
		j.res.StagedUntil = &next
		j.a.log.Info("staged: the new slot waits for the next install window", "slot", j.next.Slot, "generation", j.next.N, "window", next.Format("Mon 15:04"))
		j.a.Status(fmt.Sprintf("staged slot %s, installs at %s (or ota-agent apply)", j.next.Slot, next.Format("Mon 15:04")))
		return Idle, nil
	}
	j.a.Status("switching to slot " + j.next.Slot)
	if err := j.db.SetPending(j.next); err != nil {
		return "", err
	}
	return Pending, j.db.SetStaged(nil)
}

// stagedGeneration is the generation waiting for an install window, when the inactive slot
// still holds it sealed (else the record is dropped).
func (a *Agent) stagedGeneration(db *store.DB) (*store.Generation, error) {
	g, err := db.Staged()
	if err != nil || g == nil {
		return nil, err
	}
	active, _ := a.slots.Active()
	if m, merr := a.slots.Manifest(g.Slot); merr != nil || m.Generation != g.N || g.Slot == active {
		a.log.Warn("dropping a staged generation its slot no longer holds", "slot", g.Slot, "generation", g.N)
		return nil, db.SetStaged(nil)
	}
	return g, nil
}

// applyStaged switches a staged generation: from its install window (the daemon and check
// call it first), or now with force (`ota-agent apply`). It returns nil, nil when there is
// nothing staged or the window is closed.
func (a *Agent) applyStaged(ctx context.Context, db *store.DB, force bool) (*Result, error) {
	g, err := a.stagedGeneration(db)
	if err != nil || g == nil || !force && !a.cfg.inWindow(a.now(db).Local()) {
		return nil, err
	}
	state, err := db.State()
	if err != nil {
		return nil, err
	}
	res := &Result{Result: ResultUpdated, Slot: g.Slot, Apps: map[string]AppResult{}}
	for app, x := range g.Apps {
		res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
	}
	a.log.Info("applying the staged generation", "slot", g.Slot, "generation", g.N, "forced", force)
	j := &job{a: a, db: db, asking: asking{state: state}, made: made{next: g, res: res, apply: true, dirChange: true}}
	if err := j.run(ctx, Staged); err != nil {
		return nil, err
	}
	if cur, _ := db.State(); cur == nil || cur.N != g.N {
		return res, fmt.Errorf("%w (%s)", ErrRolledBack, cmp.Or(j.reason, "health check failed"))
	}
	return res, nil
}
