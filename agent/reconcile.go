package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/store"
)

// reconcile makes the database agree with the slots after whatever interrupted the last run
// (design.md, Invariant). The `current` link and the slot manifests are the truth; bbolt is the
// index. Every step is idempotent.
func (a *Agent) reconcile(db *store.DB) error {
	if err := a.slots.Cleanup(); err != nil {
		return err
	}
	state, err := db.State()
	if err != nil {
		return err
	}
	pending, err := db.Pending()
	if err != nil {
		return err
	}
	active, err := a.slots.Active()
	if errors.Is(err, installer.ErrNoSlot) {
		if state != nil || pending != nil {
			a.log.Warn("no current slot link: forgetting the recorded generation", "state_dir", a.slots.Dir)
			return db.SetState(nil)
		}
		return nil
	}
	var m *installer.Manifest
	if err == nil {
		m, err = a.slots.Manifest(active)
	}
	if err != nil {
		if active, m, err = a.heal(db, state, active, err); err != nil || m == nil {
			return err
		}
		pending = nil
	}
	if pending != nil {
		if pending.Slot == active && pending.N == m.Generation {
			a.log.Info("finishing an interrupted switch", "slot", active, "generation", m.Generation, "rollback", pending.Rollback)
			ns := a.newState(state, pending)
			if pending.Rollback {
				ns.Status, ns.Rollback = store.StatusCommitted, false
			}
			return db.SetState(ns)
		}
		a.log.Info("discarding an install interrupted before its switch", "slot", pending.Slot, "generation", pending.N)
		if err := db.SetPending(nil); err != nil {
			return err
		}
	}
	if state == nil || state.Slot != active || state.N != m.Generation {
		a.log.Warn("database disagrees with the slots; rebuilding from slot manifests", "slot", active, "generation", m.Generation)
		s := manifestState(active, m, a.now(db))
		if om, err := a.slots.Manifest(installer.Other(active)); err == nil {
			s.Previous = &store.Reference{N: om.Generation, Slot: installer.Other(active)}
		}
		return db.SetState(s)
	}
	if state.Status == store.StatusTrial {
		state.Trials++
		if state.Trials >= a.cfg.Hooks.MaxTrials {
			j := &job{a: a, db: db, made: made{reason: fmt.Sprintf("restarted %d time(s) while generation %d was on trial", state.Trials, state.N)}}
			return j.run(context.Background(), RollingBack)
		}
		return db.SetState(state)
	}
	return nil
}

// heal repairs an active slot that cannot be used as it is (`current` names no slot or a
// missing one; its manifest is missing, unreadable or not JSON), from what is intact, in
// this order: the slot's files still match the database (the manifest is rewritten from
// it); the other slot is whole (`current` is switched to it); else nothing is active and
// the next check installs afresh. It returns the slot now active and its manifest (nil
// when none is).
func (a *Agent) heal(db *store.DB, state *store.State, active string, damage error) (string, *installer.Manifest, error) {
	if err := db.SetPending(nil); err != nil {
		return "", nil, err
	}
	if active != "" && state != nil && state.Slot == active {
		if err := a.slots.Verify(active, state.Apps); err == nil {
			m := &installer.Manifest{Generation: state.N, Apps: state.Apps}
			if err := a.slots.WriteManifest(active, m); err != nil {
				return "", nil, err
			}
			a.log.Error("healed: rewrote the active slot's manifest from the database (its files match it)", "slot", active, "generation", state.N, "damage", damage)
			return active, m, nil
		}
	}
	// The whole slots; the one the database names first, then the newest generation.
	var best string
	var bm *installer.Manifest
	for _, s := range []string{installer.SlotA, installer.SlotB} {
		m, err := a.slots.Manifest(s)
		if err != nil || a.slots.Verify(s, m.Apps) != nil {
			continue
		}
		named := state != nil && state.Slot == s && state.N == m.Generation
		if bm == nil || named || (m.Generation > bm.Generation && !(state != nil && state.Slot == best)) {
			best, bm = s, m
		}
	}
	if bm != nil {
		if best != active {
			if err := a.slots.Switch(best); err != nil {
				return "", nil, err
			}
		}
		a.log.Error("healed: the active slot was unusable; switched to the whole slot", "slot", best, "generation", bm.Generation, "damage", damage)
		return best, bm, nil
	}
	if err := a.slots.Unlink(); err != nil {
		return "", nil, err
	}
	a.log.Error("healed: no slot is whole; nothing is active and the next check installs afresh", "damage", damage)
	return "", nil, db.SetState(nil)
}

// repaired records that apps found damaged on disk came back in generation next.
func (a *Agent) repaired(db *store.DB, prev *store.State, next *store.Generation) {
	rec, _ := db.LastVerify()
	if rec == nil {
		rec = &store.VerifyRecord{}
	}
	for app := range prev.Damaged {
		if x, ok := next.Apps[app]; ok {
			a.log.Warn("repaired: fetched again an app found damaged on disk", "app", app, "version", x.Version, "generation", next.N)
			rec.Repaired = append(rec.Repaired, fmt.Sprintf("%s: fetched again (%s) in generation %d", app, x.Version, next.N))
		}
	}
	db.RecordVerify(*rec)
}

// newState is the record of a generation just switched to.
func (a *Agent) newState(prev *store.State, g *store.Generation) *store.State {
	s := &store.State{Generation: *g, Status: store.StatusCommitted, Since: a.Now()}
	if a.gated() {
		s.Status = store.StatusTrial
	}
	var before map[string]store.App
	if prev != nil {
		s.Previous = &store.Reference{N: prev.N, Slot: prev.Slot}
		before = prev.Apps
	}
	s.Restart = a.unitsOf(before, g.Apps)
	return s
}

// ResumeTrial finishes what a restart left after a switch: units not yet restarted (the
// machine from Restarting), or a trial (max_trials > 1; from Trial).
func (a *Agent) ResumeTrial(ctx context.Context, db *store.DB) error {
	s, err := db.State()
	if err != nil || s == nil {
		return err
	}
	j := &job{a: a, db: db, made: made{cur: s}}
	switch {
	case len(s.Restart) > 0:
		return j.run(ctx, Restarting)
	case s.Status == store.StatusTrial:
		return j.run(ctx, Trial)
	}
	return nil
}

// Rollback switches back to the previous generation by hand; what it leaves is refused.
func (a *Agent) Rollback(ctx context.Context, db *store.DB, reason string) error {
	j := &job{a: a, db: db, made: made{reason: reason, byHand: true}}
	return j.run(ctx, RollingBack)
}

// rollback returns to the previous generation; every binary of the abandoned generation
// that the previous one lacks is refused until the server offers another.
func (a *Agent) rollback(db *store.DB, reason string) error {
	s, err := db.State()
	if err != nil {
		return err
	}
	if s == nil {
		return errors.New("nothing to roll back to: nothing is installed")
	}
	if s.Previous == nil {
		return a.rollbackToNothing(db, s, reason)
	}
	m, err := a.slots.Manifest(s.Previous.Slot)
	if err != nil || m.Generation != s.Previous.N {
		return fmt.Errorf("cannot roll back: slot %s no longer holds generation %d", s.Previous.Slot, s.Previous.N)
	}
	back := &store.Generation{N: m.Generation, Slot: s.Previous.Slot, Apps: m.Apps, Rollback: true}
	a.Status("rolling back to slot " + back.Slot)
	// First: a crash later in the rollback must not let the release back in.
	if err := a.refuseApps(db, s.Apps, m.Apps, reason); err != nil {
		return err
	}
	if err := db.SetPending(back); err != nil {
		return err
	}
	a.step("rollback-pending")
	if err := a.slots.Switch(back.Slot); err != nil {
		return err
	}
	a.step("rollback-switched")
	back.Rollback = false
	ns := &store.State{Generation: *back, Status: store.StatusCommitted, Since: a.now(db), Previous: &store.Reference{N: s.N, Slot: s.Slot},
		Restart: a.unitsOf(s.Apps, back.Apps)}
	if err := db.SetState(ns); err != nil {
		return err
	}
	db.Count(func(c *store.Counters) { c.Rollbacks++ })
	a.log.Warn("rolled back", "slot", back.Slot, "generation", back.N, "from_generation", s.N, "reason", reason)
	return nil
}

// forgetRefusals: once a generation is committed, earlier refusals of other releases of the
// apps it changed lapse (the server offered another, and it is installed; an app it did not
// change keeps its refusals, or a release still offered would be fetched again). Here, not
// only when the run finishes: a restart during the trial (a power cut) commits it from
// another run.
func (a *Agent) forgetRefusals(db *store.DB, s *store.State) {
	var before map[string]store.App
	if s.Previous != nil {
		m, err := a.slots.Manifest(s.Previous.Slot)
		if err != nil || m.Generation != s.Previous.N {
			return
		}
		before = m.Apps
	}
	for app, x := range s.Apps {
		if before[app].MD5 != x.MD5 {
			db.ForgetRefusals(app, x.MD5)
		}
	}
}

// refuseApps refuses every app of apps whose MD5 keep does not also hold, keeping the reason
// of an earlier refusal of the same MD5.
func (a *Agent) refuseApps(db *store.DB, apps, keep map[string]store.App, reason string) error {
	for app, x := range apps {
		if old, ok := keep[app]; ok && old.MD5 == x.MD5 {
			continue
		}
		if r, _ := db.Refused(x.MD5); r != nil {
			continue
		}
		if err := db.Refuse(x.MD5, store.Refusal{App: app, Version: x.Version, Reason: reason, Time: a.now(db)}); err != nil {
			return err
		}
	}
	return nil
}

// rollbackToNothing undoes a first install: the device had no generation before it.
func (a *Agent) rollbackToNothing(db *store.DB, s *store.State, reason string) error {
	if err := a.refuseApps(db, s.Apps, nil, reason); err != nil { // first, as rollback does
		return err
	}
	if err := db.SetPending(nil); err != nil {
		return err
	}
	if err := a.slots.Unlink(); err != nil {
		return err
	}
	if err := db.SetState(nil); err != nil {
		return err
	}
	db.Count(func(c *store.Counters) { c.Rollbacks++ })
	a.log.Warn("rolled back the first install: nothing is installed now", "from_generation", s.N, "reason", reason)
	return nil
}

// cleanDownloads removes partial downloads the plan no longer needs.
func (a *Agent) cleanDownloads(plan *Plan) error {
	root, err := a.slots.Root()
	if err != nil {
		return err
	}
	if fi, err := root.Lstat("downloads"); err != nil || !fi.IsDir() {
		return nil // tidied at open; a link here is never listed
	}
	d, err := root.Open("downloads")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		keep := false
		for _, d := range plan.Download {
			keep = keep || patchMember(n, d.Member())
		}
		if !keep {
			root.RemoveAll("downloads/" + n)
		}
	}
	return err
}
