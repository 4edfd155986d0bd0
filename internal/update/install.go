package update

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/store"
)

// The steps of an install, from the request to the record of the new generation.

// ask: the canonical request; a 304 ends the run.
func (j *job) ask(ctx context.Context) (State, error) {
	j.a.Status("checking " + j.a.Cfg.Server.URL)
	if j.Keyed && j.Mode == protocol.ModeFull { // phased rollouts decide before the payload
		if ask, note, err := j.AskFirst(ctx); err != nil || !ask {
			j.res = result.UpToDate(j.State)
			j.res.Note = note
			return Idle, err
		}
	}
	ans, mode, err := j.a.Proto.FetchAnswer(ctx, j.db, j.c.Facts, j.INM, j.Mode, false)
	if err != nil {
		return "", err
	}
	j.Mode = mode
	if ans.Status == http.StatusNotModified {
		ans.Resp.Body.Close()
		if j.resumeOS != "" { // nothing to fetch: the image is not offered any more
			if err := j.db.SetProgress(j.resumeOS, nil); err != nil {
				return "", err
			}
		}
		j.res = result.UpToDate(j.State)
		return Idle, nil
	}
	j.resp = ans.Resp
	return Receive, nil
}

// receive takes the answer into a fresh staging directory: the payload, or the downloads.
func (j *job) receive(ctx context.Context) (State, error) {
	active, err := j.a.Slots.Active()
	if err != nil && !errors.Is(err, installer.ErrNoSlot) {
		return "", err
	}
	j.active = active
	if j.From == "" {
		j.From = active
	}
	target := installer.SlotA
	if active != "" {
		target = installer.Other(active)
	}
	if j.St, err = j.a.Slots.Stage(target); err != nil {
		return "", err
	}
	gen := appsGen(j.State)
	if j.State != nil && j.State.Previous != nil {
		gen = max(gen, j.State.Previous.N) // numbers never repeat, even after a rollback
	}
	if err := j.Receive(ctx, j.resp, gen+1); err != nil {
		return "", err
	}
	j.rec.Next, j.made.gen = j.Next, gen+1
	j.res.Result, j.res.Slot, j.res.Bytes = result.Updated, j.St.Slot(), j.Bytes
	return Verify, nil
}

// verify checks every binary received (assemble.Assembly.Verify).
func (j *job) verify(ctx context.Context) (State, error) {
	err := j.Verify(ctx)
	maps.Copy(j.res.Apps, j.Apps)
	return Compose, err
}

// compose carries the unchanged apps over; an OS image goes to its partition next.
func (j *job) compose(context.Context) (State, error) {
	if err := j.Compose(); err != nil {
		return "", err
	}
	maps.Copy(j.res.Apps, j.Apps)
	j.res.Removed, j.res.Unlisted = j.Removed, j.Unlisted
	if j.OSItem != nil {
		return WriteOS, nil
	}
	return Seal, nil
}

// seal runs the pre_install hook and seals the staging directory into the new slot; a run
// that changes no directory slot ends here.
func (j *job) seal(ctx context.Context) (State, error) {
	if !j.DirChange {
		j.res.Slot, j.done = j.active, true
		if j.OSItem == nil {
			j.res.Result, j.res.Note = result.UpToDateResult, j.Plan.NothingNote()
		}
		return Idle, nil
	}
	next := j.rec.Next
	if err := j.a.runHook(ctx, "pre_install", j.a.Cfg.Hooks.PreInstall, j.a.hookEnv(next, j.active)); err != nil {
		return "", fmt.Errorf("hooks.pre_install refused the install: %w", err)
	}
	if err := j.St.Seal(installer.Manifest{Generation: next.N, Apps: next.Apps}); err != nil {
		return "", fmt.Errorf("seal slot %s: %w", j.St.Slot(), err)
	}
	j.sealed = true
	return Park, nil
}

// park records the sealed generation as staged: it survives a restart, and waits there
// for an install window (install.windows) or `ota-agent apply`.
func (j *job) park(context.Context) (State, error) {
	next := j.rec.Next
	j.later(func(db *store.DB) error { return db.SetStaged(next) })
	return AwaitWindow, nil
}

// awaitWindow switches a parked generation when an install window (or apply) allows;
// outside a window the run ends here and the generation stays staged.
func (j *job) awaitWindow(context.Context) (State, error) {
	next := j.rec.Next
	if !j.rec.Apply && !j.a.Cfg.InWindow(j.a.now(j.db).Local()) {
		j.res.Result, j.done = result.Staged, true
		at := j.a.Cfg.NextWindow(j.a.now(j.db).Local())
		j.res.StagedUntil = &at
		j.a.Log.Info("staged: the new slot waits for the next install window", "slot", next.Slot, "generation", next.N, "window", at.Format("Mon 15:04"))
		j.a.Status(fmt.Sprintf("staged slot %s, installs at %s (or ota-agent apply)", next.Slot, at.Format("Mon 15:04")))
		return Idle, nil
	}
	j.a.Status("switching to slot " + next.Slot)
	j.later(func(db *store.DB) error { return db.SetStaged(nil) })
	return Switch, nil
}

// switchSlot points `current` at the slot of the journal's generation.
func (j *job) switchSlot(context.Context) (State, error) {
	return Record, j.a.Slots.Switch(j.rec.Next.Slot)
}

// record makes the switched-to generation the active one, with the record before it as its
// previous: on trial when a health check is configured, else committed. A rollback's
// generation is committed at once.
func (j *job) record(context.Context) (State, error) {
	prev, err := j.db.State()
	if err != nil {
		return "", err
	}
	if j.rec.Next.Rollback {
		return j.recordRollback(prev)
	}
	s := j.a.newState(prev, j.rec.Next)
	j.rec.Judge, j.rec.Restart = s.Status == store.StatusTrial, j.a.Health.UnitsOf(appsOf(prev), s.Apps)
	j.later(func(db *store.DB) error { return db.SetState(s) })
	j.done, j.res.Switched = true, true
	j.a.Log.Info("switched", "slot", s.Slot, "generation", s.N, "status", s.Status)
	if prev != nil && len(prev.Damaged) > 0 {
		j.later(func(db *store.DB) error { return j.a.repaired(db, prev, j.rec.Next) })
	}
	switch {
	case len(j.rec.Restart) > 0:
		return RestartUnits, nil
	case j.rec.Judge:
		return Trial, nil
	}
	j.later(func(db *store.DB) error { return j.a.forgetRefusals(db, s) })
	return Commit, nil
}

// appsOf is a state's apps (none before the first install).
func appsOf(s *store.State) map[string]store.App {
	if s == nil {
		return nil
	}
	return s.Apps
}
