package agent

import (
	"cmp"
	"context"
	"fmt"
	"maps"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// State is a step of the update state machine. The machine is the table below: each handler
// takes the job in its state and returns the next state; the state is persisted in bbolt
// before its handler runs (so a crash names where it happened, and Recover says so; Asking,
// which writes nothing, is not), and a run stops after maxTransitions. docs/design.md draws
// the same list (a test checks).
type State string

// The states, in the order an update goes through them.
const (
	Asking      State = "asking"       // the canonical request goes out
	Staging     State = "staging"      // a 200: the payload or the downloads go into slots/<x>.tmp
	Verifying   State = "verifying"    // sizes, hashes, signatures, serials
	Composing   State = "composing"    // unchanged apps carried over; an OS image to its partition
	Written     State = "written"      // the OS image is on the inactive partition, read back
	EnvSet      State = "env-set"      // the bootloader is told to try it once
	Sealed      State = "sealed"       // the new slot is complete on disk
	Staged      State = "staged"       // it waits for an install window (install.windows)
	Pending     State = "pending"      // the switch is journalled
	Switched    State = "switched"     // `current` names the new slot
	Restarting  State = "restarting"   // the systemd units of the apps that changed are restarted
	Trial       State = "trial"        // the health hook judges the new generation
	Committed   State = "committed"    // it is good; post_commit runs
	RollingBack State = "rolling-back" // it failed: back to the previous generation, refused
	Rebooted    State = "rebooted"     // up in the new OS image: its health decides
	MarkedGood  State = "marked-good"  // the new OS image is committed in the environment
	Idle        State = "idle"         // nothing in progress
)

// States lists the machine's states (Idle last).
func States() []State {
	return []State{Asking, Staging, Verifying, Composing, Written, EnvSet, Sealed, Staged, Pending, Switched, Restarting, Trial, Committed, RollingBack, Rebooted, MarkedGood, Idle}
}

// machine is the transition table: a state's handler, returning the next state.
var machine map[State]func(*job, context.Context) (State, error)

func init() {
	machine = map[State]func(*job, context.Context) (State, error){
		Asking:      (*job).ask,
		Staging:     (*job).stage,
		Verifying:   (*job).verifyState,
		Composing:   (*job).composeState,
		Written:     (*job).setEnv,
		EnvSet:      (*job).afterEnv,
		Sealed:      (*job).stageSealed,
		Staged:      (*job).journal,
		Pending:     (*job).switchLink,
		Switched:    (*job).record,
		Restarting:  (*job).restart,
		Trial:       (*job).trial,
		Committed:   (*job).committed,
		RollingBack: (*job).rollBack,
		Rebooted:    (*job).osHealth,
		MarkedGood:  (*job).osCommitted,
	}
}

// maxTransitions stops a run that would loop.
const maxTransitions = 32

// run drives the job from state from until Idle. Asking is not persisted: it changes nothing
// on disk, so a check the server answers with a 304 writes only its record (recordCheck).
func (j *job) run(ctx context.Context, from State) error {
	s, persisted := from, false
	for n := 0; s != Idle; n++ {
		if n == maxTransitions {
			return fmt.Errorf("update state machine: %d transitions without reaching idle (at %s)", n, s)
		}
		handler, ok := machine[s]
		if !ok {
			return fmt.Errorf("update state machine: no handler for state %q", s)
		}
		if s != Asking {
			if err := j.db.SetMachine(&store.Machine{State: string(s), Since: j.a.now(j.db)}); err != nil {
				return err
			}
			persisted = true
		}
		j.a.step(string(s))
		next, err := handler(j, ctx)
		if err != nil {
			if persisted && ctx.Err() == nil {
				j.db.SetMachine(nil) // failed, not interrupted: nothing is in progress
			}
			return err
		}
		s = next
	}
	if !persisted {
		return nil
	}
	return j.db.SetMachine(nil)
}

// update is one check that may install: the machine from Asking.
func (a *Agent) update(ctx context.Context, db *store.DB, c *current) (*Result, error) {
	j, err := a.newJob(db, c)
	if err != nil {
		return nil, err
	}
	return j.finish(ctx, Asking)
}

// newJob prepares a run of the machine for what the device has (c).
func (a *Agent) newJob(db *store.DB, c *current) (*job, error) {
	j := &job{a: a, db: db,
		asking:  asking{c: c, mode: a.payloadMode(db), state: c.state, installed: c.installed},
		staging: staging{got: map[string]packaging.Digests{}},
		osImage: osImage{parts: a.partitions(), osApp: a.osApp()}}
	if g, err := a.stagedGeneration(db); err != nil {
		return nil, err
	} else if g != nil {
		// A staged generation waits: what arrives now is planned against it, and a newer
		// one is staged over it (carrying its unchanged apps).
		j.installed, j.from = maps.Clone(g.Apps), g.Slot
		for app, x := range c.installed {
			if j.isOS(app) {
				j.installed[app] = x
			}
		}
	}
	return j, nil
}

// finish runs the machine from state from and makes the result: the active slot is never
// touched before the switch, and everything half-made is cleaned up.
func (j *job) finish(ctx context.Context, from State) (res *Result, err error) {
	db := j.db
	defer func() {
		if j.resp != nil {
			j.resp.Body.Close()
		}
		if j.st != nil && !j.sealed {
			j.st.Abort()
		}
		if j.done {
			j.finished()
		}
		if err != nil && res == nil {
			res = failed(err)
			res.Bytes = j.bytes
		}
	}()
	if err := j.run(ctx, from); err != nil {
		return nil, err
	}
	if j.next == nil || !j.dirChange || j.res.Result == ResultStaged {
		return j.res, nil // up to date, only the OS image changed, or staged
	}
	if cur, _ := db.State(); cur == nil || cur.N != j.next.N {
		j.res.Result, j.res.Slot, j.res.Switched = ResultFailed, "", false
		if cur != nil {
			j.res.Slot = cur.Slot
		}
		return j.res, fmt.Errorf("%w to slot %s (%s)", ErrRolledBack, orNothing(j.res.Slot), cmp.Or(j.reason, "health check failed"))
	}
	return j.res, nil
}
