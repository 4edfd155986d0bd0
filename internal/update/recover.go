package update

import (
	"context"
	"errors"
	"fmt"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/store"
)

// Recover makes the state directory agree with itself after whatever interrupted the last
// run (a crash, a power cut, a reboot into a new OS image), then resumes or discards the
// update the journal names: one switch over its step. A resumed run goes on up to the
// steps that wait on the device's services (restart-units, trial, commit, os-trial), which
// Resume runs in check and run. It never asks the server.
//
//   - before a sealed slot (receive … seal): discarded; the staging directory is removed
//     and the next check asks again (a download already complete is kept for it);
//   - set-env, reboot: the OS image's environment write settled (landed: the image waits
//     for its reboot; else forgotten); the rest of that update is discarded;
//   - park, await-window, switch: resumed while the sealed slot still holds the generation,
//     else discarded; a switch that landed goes on to record;
//   - trial: one more start counted; at hooks.max_trials the generation is rolled back,
//     else its trial runs again;
//   - record, restart-units, commit, roll-back, os-trial, os-commit: resumed;
//   - nothing in progress: an OS image set to try and booted since is judged (os-trial),
//     or refused when the bootloader fell back.
func (a *Engine) Recover(ctx context.Context, db *store.DB) error {
	rec, err := db.Journal()
	if err != nil {
		return err
	}
	if err := a.reconcile(db, rec); err != nil {
		return fmt.Errorf("recover %s: %w", a.Slots.Dir, err)
	}
	if rec, err = db.Journal(); err != nil || rec == nil { // healing may have dropped it
		if err == nil {
			err = a.fellBack(db)
		}
		return err
	}
	a.Log.Warn("recovering from an update interrupted at step "+rec.Step, "step", rec.Step, "since", rec.Since)
	from := State(rec.Step)
	switch from {
	case Receive, Verify, Compose, WriteOS, Seal:
		a.Log.Info("discarding an update interrupted before its slot was sealed", "step", rec.Step)
		return db.SetJournal(nil)
	case SetEnv, Reboot:
		a.Log.Info("the OS image waits for its reboot; the rest of that update is discarded", "step", rec.Step)
		if err := a.settleOSEnv(db); err != nil {
			return err
		}
		return db.SetJournal(nil)
	case Park, AwaitWindow, Switch:
		if from, err = a.resumeSealed(rec); err != nil || from == Idle {
			return errors.Join(err, db.SetJournal(nil))
		}
	case Trial:
		rec.Trials++
		if rec.Trials < a.Cfg.Hooks.MaxTrials {
			return db.SetJournal(rec) // counted; Resume runs the trial again
		}
		from, rec.Reason = RollBack, fmt.Sprintf("restarted %d time(s) while on trial", rec.Trials)
	case RestartUnits, Commit, OSTrial:
		return nil // Resume runs it
	case Record, RollBack, OSCommit:
	default:
		a.Log.Error("the journal names no step this agent knows; discarding it", "step", rec.Step)
		return db.SetJournal(nil)
	}
	j, err := a.newJob(db, nil, *rec)
	if err != nil {
		return err
	}
	j.pause = true
	return j.run(ctx, from)
}

// Resume runs what Recover left for check and run: an interrupted update at a step that
// waits on the device's services (the units to restart, the trial, the commit's hook), or
// the trial of an OS image booted since it was set to try.
func (a *Engine) Resume(ctx context.Context, db *store.DB) error {
	rec, err := db.Journal()
	if err != nil {
		return err
	}
	if rec == nil {
		return a.awaitingReboot(ctx, db)
	}
	if !judging[State(rec.Step)] {
		return nil
	}
	j, err := a.newJob(db, nil, *rec)
	if err != nil {
		return err
	}
	return j.run(ctx, State(rec.Step))
}

// resumeSealed is where a journal naming a sealed generation resumes: Record when the
// switch to it landed, the journal's own step while its slot still holds it, else nowhere
// (Idle).
func (a *Engine) resumeSealed(rec *store.Journal) (State, error) {
	if rec.Next == nil {
		return Idle, nil
	}
	active, err := a.Slots.Active()
	if err != nil && !errors.Is(err, installer.ErrNoSlot) {
		return Idle, err
	}
	m, merr := a.Slots.Manifest(rec.Next.Slot)
	switch {
	case merr != nil || m.Generation != rec.Next.N:
		a.Log.Info("discarding an update whose slot no longer holds it", "slot", rec.Next.Slot, "generation", rec.Next.N)
		return Idle, nil
	case active == rec.Next.Slot:
		a.Log.Info("finishing an interrupted switch", "slot", active, "generation", rec.Next.N, "rollback", rec.Next.Rollback)
		return Record, nil
	}
	return State(rec.Step), nil
}

// reconcile makes the database agree with the slots (design.md, Invariant). The `current`
// link and the slot manifests are the truth; bbolt is the index, and the journal says which
// generation is on its way in (a switch that landed before its record is the journal's to
// record, not a disagreement). Every step is idempotent.
func (a *Engine) reconcile(db *store.DB, rec *store.Journal) error {
	if err := a.Slots.Cleanup(); err != nil {
		return err
	}
	state, err := db.State()
	if err != nil {
		return err
	}
	active, err := a.Slots.Active()
	if errors.Is(err, installer.ErrNoSlot) {
		if state != nil {
			a.Log.Warn("no current slot link: forgetting the recorded generation", "state_dir", a.Slots.Dir)
			return db.SetState(nil)
		}
		return nil
	}
	var m *installer.Manifest
	if err == nil {
		m, err = a.Slots.Manifest(active)
	}
	if err != nil {
		if active, m, err = a.heal(db, state, active, err); err != nil || m == nil {
			return err
		}
		rec = nil // heal dropped the journal
	}
	if rec != nil && rec.Next != nil && rec.Next.Slot == active && rec.Next.N == m.Generation {
		return nil // switched, not yet recorded: the journal records it
	}
	if state == nil || state.Slot != active || state.N != m.Generation {
		a.Log.Warn("database disagrees with the slots; rebuilding from slot manifests", "slot", active, "generation", m.Generation)
		s := ManifestState(active, m, a.now(db))
		if om, err := a.Slots.Manifest(installer.Other(active)); err == nil {
			s.Previous = &store.Reference{N: om.Generation, Slot: installer.Other(active)}
		}
		return errors.Join(db.SetState(s), dropJournalOf(db, rec))
	}
	return nil
}

// dropJournalOf drops a journal whose generation the slots no longer agree with.
func dropJournalOf(db *store.DB, rec *store.Journal) error {
	if rec == nil {
		return nil
	}
	return db.SetJournal(nil)
}

// newState is the record of a generation just switched to: on trial when it is to be
// judged.
func (a *Engine) newState(prev *store.State, g *store.Generation) *store.State {
	s := &store.State{Generation: *g, Status: store.StatusCommitted, Since: a.Now()}
	if a.Health.Gated() {
		s.Status = store.StatusTrial
	}
	if prev != nil {
		s.Previous = &store.Reference{N: prev.N, Slot: prev.Slot}
	}
	return s
}

// Rollback switches back to the previous generation by hand; what it leaves is refused.
func (a *Engine) Rollback(ctx context.Context, db *store.DB, reason string) error {
	j, err := a.newJob(db, nil, store.Journal{Reason: reason, ByHand: true})
	if err != nil {
		return err
	}
	return j.run(ctx, RollBack)
}

// heal repairs an active slot that cannot be used as it is (`current` names no slot or a
// missing one; its manifest is missing, unreadable or not JSON), from what is intact, in
// this order: the slot's files still match the database (the manifest is rewritten from
// it); the other slot is whole (`current` is switched to it); else nothing is active and
// the next check installs afresh. It returns the slot now active and its manifest (nil
// when none is).
func (a *Engine) heal(db *store.DB, state *store.State, active string, damage error) (string, *installer.Manifest, error) {
	if err := db.SetJournal(nil); err != nil { // what it names is not what the slots hold
		return "", nil, err
	}
	if active != "" && state != nil && state.Slot == active {
		if err := a.Slots.Verify(active, state.Apps); err == nil {
			m := &installer.Manifest{Generation: state.N, Apps: state.Apps}
			if err := a.Slots.WriteManifest(active, m); err != nil {
				return "", nil, err
			}
			a.Log.Error("healed: rewrote the active slot's manifest from the database (its files match it)", "slot", active, "generation", state.N, "damage", damage)
			return active, m, nil
		}
	}
	// The whole slots; the one the database names first, then the newest generation.
	var best string
	var bm *installer.Manifest
	for _, s := range []string{installer.SlotA, installer.SlotB} {
		m, err := a.Slots.Manifest(s)
		if err != nil || a.Slots.Verify(s, m.Apps) != nil {
			continue
		}
		named := state != nil && state.Slot == s && state.N == m.Generation
		if bm == nil || named || (m.Generation > bm.Generation && !(state != nil && state.Slot == best)) {
			best, bm = s, m
		}
	}
	if bm != nil {
		if best != active {
			if err := a.Slots.Switch(best); err != nil {
				return "", nil, err
			}
		}
		a.Log.Error("healed: the active slot was unusable; switched to the whole slot", "slot", best, "generation", bm.Generation, "damage", damage)
		return best, bm, nil
	}
	if err := a.Slots.Unlink(); err != nil {
		return "", nil, err
	}
	a.Log.Error("healed: no slot is whole; nothing is active and the next check installs afresh", "damage", damage)
	return "", nil, db.SetState(nil)
}

// repaired records that apps found damaged on disk came back in generation next.
func (a *Engine) repaired(db *store.DB, prev *store.State, next *store.Generation) error {
	rec, err := db.LastVerify()
	if err != nil {
		return err
	}
	if rec == nil {
		rec = &store.VerifyRecord{}
	}
	for app := range prev.Damaged {
		if x, ok := next.Apps[app]; ok {
			a.Log.Warn("repaired: fetched again an app found damaged on disk", "app", app, "version", x.Version, "generation", next.N)
			rec.Repaired = append(rec.Repaired, fmt.Sprintf("%s: fetched again (%s) in generation %d", app, x.Version, next.N))
		}
	}
	return db.RecordVerify(*rec)
}

// forgetRefusals: once a generation is committed, earlier refusals of other releases of the
// apps it changed lapse (the server offered another, and it is installed; an app it did not
// change keeps its refusals, or a release still offered would be fetched again). Here, not
// only when the run finishes: a restart during the trial (a power cut) commits it from
// another run.
func (a *Engine) forgetRefusals(db *store.DB, s *store.State) error {
	var before map[string]store.App
	if s.Previous != nil {
		m, err := a.Slots.Manifest(s.Previous.Slot)
		if err != nil || m.Generation != s.Previous.N {
			return nil // the slot before was replaced: which apps changed is not known
		}
		before = m.Apps
	}
	for app, x := range s.Apps {
		if before[app].MD5 != x.MD5 {
			if err := db.ForgetRefusals(app, x.MD5); err != nil {
				return err
			}
		}
	}
	return nil
}

// refuseApps refuses every app of apps whose MD5 keep does not also hold, keeping the reason
// of an earlier refusal of the same MD5.
func (a *Engine) refuseApps(db *store.DB, apps, keep map[string]store.App, reason string) error {
	for app, x := range apps {
		if old, ok := keep[app]; ok && old.MD5 == x.MD5 {
			continue
		}
		r, err := db.Refused(x.MD5)
		if err != nil {
			return err
		}
		if r != nil {
			continue
		}
		if err := db.Refuse(x.MD5, store.Refusal{App: app, Version: x.Version, Reason: reason, Time: a.now(db)}); err != nil {
			return err
		}
	}
	return nil
}

// rollbackToNothing undoes a first install: the device had no generation before it.
func (a *Engine) rollbackToNothing(db *store.DB, s *store.State, reason string) error {
	if err := a.refuseApps(db, s.Apps, nil, reason); err != nil { // first, as rollback does
		return err
	}
	if err := a.Slots.Unlink(); err != nil {
		return err
	}
	if err := db.SetState(nil); err != nil {
		return err
	}
	if err := db.Count(func(c *store.Counters) { c.Rollbacks++ }); err != nil {
		return err
	}
	a.Log.Warn("rolled back the first install: nothing is installed now", "from_generation", s.N, "reason", reason)
	return nil
}
