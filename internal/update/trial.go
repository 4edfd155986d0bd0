package update

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ota-agent/ota-agent/store"
)

// After the switch: the units of the apps that changed restarted, the trial, the commit or
// the rollback.

// restartUnits restarts the systemd units the journal names (kept there until done, so a
// crash restarts them at the next start); then the trial, or nothing after a rollback. A
// unit that cannot be restarted fails the trial.
func (j *job) restartUnits(ctx context.Context) (State, error) {
	units := j.rec.Restart
	j.a.Status("restarting " + strings.Join(units, " "))
	err := j.a.Health.Restart(ctx, units)
	switch {
	case err != nil && ctx.Err() != nil:
		return "", ctx.Err()
	case err != nil && j.rec.Judge:
		j.rec.Reason = "health check failed: " + err.Error()
		return RollBack, nil
	case err != nil:
		j.a.Log.Error("units not restarted after the rollback", "units", strings.Join(units, " "), "error", err)
	default:
		j.a.Log.Info("restarted units", "units", strings.Join(units, " "))
	}
	j.rec.Restart = nil
	if j.rec.Judge {
		return Trial, nil
	}
	return Idle, nil
}

// trial judges the active generation (health.go): success commits, failure rolls back.
func (j *job) trial(ctx context.Context) (State, error) {
	s, err := j.db.State()
	if err != nil || s == nil {
		return "", errors.Join(err, errors.New("a trial with no generation recorded"))
	}
	j.a.Status(fmt.Sprintf("health check of slot %s", s.Slot))
	if err := j.a.Health.Judge(ctx, s.Apps, j.a.hookEnv(&s.Generation, "")); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err() // stopped: the next start counts a trial
		}
		j.rec.Reason = "health check failed: " + err.Error()
		return RollBack, nil
	}
	s.Status = store.StatusCommitted
	j.later(func(db *store.DB) error {
		if err := j.a.forgetRefusals(db, s); err != nil {
			return err
		}
		return db.SetState(s)
	})
	j.rec.Judge, j.rec.Trials = false, 0
	j.a.Log.Info("committed", "slot", s.Slot, "generation", s.N)
	return Commit, nil
}

// commit runs post_commit (its failure leaves the generation committed).
func (j *job) commit(ctx context.Context) (State, error) {
	s, err := j.db.State()
	if err != nil || s == nil {
		return Idle, err
	}
	if err := j.a.runHook(ctx, "post_commit", j.a.Cfg.Hooks.PostCommit, j.a.hookEnv(&s.Generation, "")); err != nil {
		j.a.Log.Warn("hooks.post_commit failed (the generation stays committed)", "error", err)
	}
	return Idle, nil
}

// rollBack refuses every release of the active generation the previous one lacks (first:
// a crash later must not let it back in) and makes the previous generation the journal's
// next: the switch and the record follow, as for an install. With no previous generation
// (the first install) nothing is installed after it.
func (j *job) rollBack(context.Context) (State, error) {
	s, err := j.db.State()
	if err != nil {
		return "", err
	}
	if s == nil {
		return "", errors.New("nothing to roll back to: nothing is installed")
	}
	if s.Previous == nil {
		return Idle, j.a.rollbackToNothing(j.db, s, j.rec.Reason)
	}
	m, err := j.a.Slots.Manifest(s.Previous.Slot)
	if err != nil || m.Generation != s.Previous.N {
		return "", fmt.Errorf("cannot roll back: slot %s no longer holds generation %d", s.Previous.Slot, s.Previous.N)
	}
	reason := j.rec.Reason
	j.later(func(db *store.DB) error { return j.a.refuseApps(db, s.Apps, m.Apps, reason) })
	j.rec.Next = &store.Generation{N: m.Generation, Slot: s.Previous.Slot, Apps: m.Apps, Rollback: true}
	j.rec.Judge, j.rec.Trials = false, 0
	j.a.Status("rolling back to slot " + s.Previous.Slot)
	return Switch, nil
}

// recordRollback records the generation rolled back to as committed, with the abandoned one
// as its previous; the units of the apps it changes back run the old generation again.
func (j *job) recordRollback(abandoned *store.State) (State, error) {
	back := *j.rec.Next
	back.Rollback = false
	s := &store.State{Generation: back, Status: store.StatusCommitted, Since: j.a.now(j.db), Reason: j.rec.Reason}
	if abandoned != nil {
		s.Previous = &store.Reference{N: abandoned.N, Slot: abandoned.Slot}
	}
	j.rec.Restart = j.a.Health.UnitsOf(appsOf(abandoned), back.Apps)
	byHand := j.rec.ByHand
	j.later(func(db *store.DB) error {
		if byHand { // wanted again: a refusal of what it holds ends (a rollback of a rollback)
			for _, x := range back.Apps {
				if err := db.Unrefuse(x.MD5); err != nil {
					return err
				}
			}
		}
		if err := db.Count(func(c *store.Counters) { c.Rollbacks++ }); err != nil {
			return err
		}
		return db.SetState(s)
	})
	j.a.Log.Warn("rolled back", "slot", back.Slot, "generation", back.N, "from_generation", appsGen(abandoned), "reason", j.rec.Reason)
	if len(j.rec.Restart) > 0 {
		return RestartUnits, nil
	}
	return Idle, nil
}

// appsGen is a state's generation number (0: none).
func appsGen(s *store.State) int64 {
	if s == nil {
		return 0
	}
	return s.N
}
