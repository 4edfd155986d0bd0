package agent

import (
	"context"
	"fmt"

	"github.com/ota-agent/ota-agent/store"
)

// State is a step of the update state machine. The machine is the table below: each handler
// takes the job in its state and returns the next state; the state is persisted in bbolt
// before its handler runs (so a crash names where it happened, and Recover says so), and a
// run stops after maxTransitions. docs/design.md draws the same list (a test checks).
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
	Trial       State = "trial"        // the health hook judges the new generation
	Committed   State = "committed"    // it is good; post_commit runs
	RollingBack State = "rolling-back" // it failed: back to the previous generation, refused
	Rebooted    State = "rebooted"     // up in the new OS image: its health decides
	MarkedGood  State = "marked-good"  // the new OS image is committed in the environment
	Idle        State = "idle"         // nothing in progress
)

// States lists the machine's states (Idle last).
func States() []State {
	return []State{Asking, Staging, Verifying, Composing, Written, EnvSet, Sealed, Staged, Pending, Switched, Trial, Committed, RollingBack, Rebooted, MarkedGood, Idle}
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
		Trial:       (*job).trial,
		Committed:   (*job).committed,
		RollingBack: (*job).rollBack,
		Rebooted:    (*job).osHealth,
		MarkedGood:  (*job).osCommitted,
	}
}

// maxTransitions stops a run that would loop.
const maxTransitions = 32

// run drives the job from state from until Idle.
func (j *job) run(ctx context.Context, from State) error {
	s := from
	for n := 0; s != Idle; n++ {
		if n == maxTransitions {
			return fmt.Errorf("update state machine: %d transitions without reaching idle (at %s)", n, s)
		}
		handler, ok := machine[s]
		if !ok {
			return fmt.Errorf("update state machine: no handler for state %q", s)
		}
		if err := j.db.SetMachine(&store.Machine{State: string(s), Since: j.a.now(j.db)}); err != nil {
			return err
		}
		j.a.step(string(s))
		next, err := handler(j, ctx)
		if err != nil {
			if ctx.Err() == nil {
				j.db.SetMachine(nil) // failed, not interrupted: nothing is in progress
			}
			return err
		}
		s = next
	}
	return j.db.SetMachine(nil)
}
