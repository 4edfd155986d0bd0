package update

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"

	"github.com/ota-agent/ota-agent/internal/assemble"
	"github.com/ota-agent/ota-agent/internal/osimage"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/store"
)

// State is a step of the update state machine, named for what is still to do. The machine is
// the table below: each handler does its step and returns the next one. Before a step runs,
// the journal (store.Journal) is written with that step and the data the steps from there on
// need, in one transaction with what the step before wrote: it is the resume point, and
// Recover is one switch over it. A run stops after maxTransitions. docs/design.md draws the
// same list (a test checks).
type State string

// The states, in the order an update goes through them.
const (
	Ask          State = "ask"           // the canonical request (not journalled: it writes nothing)
	Receive      State = "receive"       // a 200: the payload or the downloads into slots/<x>.tmp
	Verify       State = "verify"        // sizes, hashes, signatures, serials
	Compose      State = "compose"       // unchanged apps carried over
	WriteOS      State = "write-os"      // the OS image onto the inactive partition, read back
	SetEnv       State = "set-env"       // the bootloader told to try it once
	Reboot       State = "reboot"        // slots.os.reboot runs (else a reboot is awaited)
	Seal         State = "seal"          // pre_install, then the staging directory sealed into the slot
	Park         State = "park"          // the sealed generation recorded (it survives a restart)
	AwaitWindow  State = "await-window"  // outside install.windows the run ends here (staged)
	Switch       State = "switch"        // `current` renamed over to the slot
	Record       State = "record"        // the generation recorded as active
	RestartUnits State = "restart-units" // the systemd units of the apps that changed
	Trial        State = "trial"         // the health checks judge the new generation
	Commit       State = "commit"        // it is good: post_commit
	RollBack     State = "roll-back"     // it failed: refused, and back to the previous one
	OSTrial      State = "os-trial"      // up in the new OS image: its health decides
	OSCommit     State = "os-commit"     // the new OS image committed in the environment
	Idle         State = "idle"          // nothing in progress
)

// States lists the machine's states (Idle last).
func States() []State {
	return []State{Ask, Receive, Verify, Compose, WriteOS, SetEnv, Reboot, Seal, Park, AwaitWindow, Switch, Record, RestartUnits, Trial, Commit, RollBack, OSTrial, OSCommit, Idle}
}

// handlers is the transition table: a state's handler, returning the next state.
func handlers() map[State]func(*job, context.Context) (State, error) {
	return map[State]func(*job, context.Context) (State, error){
		Ask: (*job).ask, Receive: (*job).receive, Verify: (*job).verify, Compose: (*job).compose,
		WriteOS: (*job).writeOS, SetEnv: (*job).setEnv, Reboot: (*job).reboot, Seal: (*job).seal,
		Park: (*job).park, AwaitWindow: (*job).awaitWindow, Switch: (*job).switchSlot, Record: (*job).record,
		RestartUnits: (*job).restartUnits, Trial: (*job).trial, Commit: (*job).commit, RollBack: (*job).rollBack,
		OSTrial: (*job).osTrial, OSCommit: (*job).osCommit,
	}
}

// durable are the states from which a run resumes after a crash: what the steps before
// them made survives on disk (a sealed slot, the switched link, the partition and its
// environment). A run that fails before them leaves nothing in progress.
var durable = map[State]bool{Park: true, AwaitWindow: true, Switch: true, Record: true, RestartUnits: true, Trial: true, Commit: true, RollBack: true, OSTrial: true, OSCommit: true}

// maxTransitions stops a run that would loop.
const maxTransitions = 32

// job is one run of the machine. rec is its journal: the step and the data the steps from
// there on need (the generation made, the units to restart, the trials seen, why it rolls
// back). The rest is what a run holds in memory, phase by phase; a run resumed from the
// journal starts where those phases are over. The active slot is never touched before
// Switch: any error before it leaves the old set active and the database as it was.
type job struct {
	a        *Engine
	db       *store.DB
	rec      store.Journal
	writes   []func(*store.DB) error // this step's records, committed with the next step
	handlers map[State]func(*job, context.Context) (State, error)
	pause    bool // stop before a judging step (Recover)
	res      *result.Result
	c        *Current       // facts, installed set, If-None-Match (nil: resumed or judging)
	resp     *http.Response // the server's 200 (or an offline payload)
	active   string         // the active slot ("" before the first install)
	os       *store.OSState // the OS image written (slots.os.backend: partition)
	resumeOS string         // a full payload's OS image resumed: this check asks in metadata mode
	made
	assemble.Assembly // what arrives and the generation made of it
}

// newJob is the one constructor of a run: for what the device has (c, nil for a run that
// resumes or judges), from the journal record rec.
func (a *Engine) newJob(db *store.DB, c *Current, rec store.Journal) (*job, error) {
	j := &job{a: a, db: db, rec: rec, handlers: handlers(), res: &result.Result{Apps: map[string]result.AppResult{}}, c: c,
		Assembly: assemble.Assembly{Env: a.env(nil), DB: db}}
	if c == nil {
		return j, nil
	}
	j.Facts, j.INM, j.Mode, j.State, j.Installed = c.Facts, c.INM, a.Proto.PayloadMode(db), c.State, c.Installed
	if m, off := osimage.PayloadResume(a.Cfg, db); m != "" && j.Mode == protocol.ModeFull {
		a.Log.Info("asking in metadata mode once: the OS image a full payload was streaming resumes from the firmware CDN", "file", m, "from", off)
		j.Mode, j.resumeOS = protocol.ModeMetadata, m
	}
	g, err := a.stagedGeneration(db)
	if err != nil || g == nil {
		return j, err
	}
	// A staged generation waits: what arrives now is planned against it, and a newer one is
	// staged over it (carrying its unchanged apps).
	j.Installed, j.From = maps.Clone(g.Apps), g.Slot
	for app, x := range c.Installed {
		if j.IsOS(app) {
			j.Installed[app] = x
		}
	}
	return j, nil
}

// judging are the steps that wait on the device's own services (units, health checks,
// hooks): Recover settles an interrupted update up to them, and check and run go on (Resume).
var judging = map[State]bool{RestartUnits: true, Trial: true, Commit: true, OSTrial: true}

// run drives the job from state from until Idle, writing the journal before each step. With
// pause set, a run that reaches a judging step after its first ends there, journalled.
func (j *job) run(ctx context.Context, from State) error {
	j.rec.Step = string(from)
	journalled := false
	for n := 0; State(j.rec.Step) != Idle; n++ {
		s := State(j.rec.Step)
		handler, ok := j.handlers[s]
		switch {
		case n == maxTransitions:
			return fmt.Errorf("update state machine: %d transitions without reaching idle (at %s)", n, s)
		case !ok:
			return fmt.Errorf("update state machine: no handler for state %q", s)
		}
		if s != Ask {
			j.rec.Since = j.a.now(j.db)
			if err := j.persist(&j.rec); err != nil {
				return err
			}
			journalled = true
		}
		if j.pause && n > 0 && judging[s] {
			return nil // resumed here by check or run (Resume)
		}
		j.a.step(string(s))
		if j.rec.Next != nil && j.rec.Next.Rollback {
			j.a.step("rollback-" + string(s)) // the switch and record of a rollback
		}
		next, err := handler(j, ctx)
		if err != nil {
			j.writes = nil
			if journalled && ctx.Err() == nil && !durable[s] {
				if jerr := j.db.SetJournal(nil); jerr != nil { // failed, not interrupted, before anything durable
					j.a.Log.Warn("could not clear the journal of a failed run (the next start discards it)", "step", s, "err", jerr)
				}
			}
			return err
		}
		j.rec.Step = string(next)
	}
	if !journalled && len(j.writes) == 0 {
		return nil
	}
	return j.persist(nil)
}

// persist writes the records this step made and the journal (nil: nothing in progress) in
// one transaction.
func (j *job) persist(rec *store.Journal) error {
	writes := j.writes
	j.writes = nil
	return j.db.Batch(func(db *store.DB) error {
		for _, w := range writes {
			if err := w(db); err != nil {
				return err
			}
		}
		return db.SetJournal(rec)
	})
}

// later adds a record to write with the next step's journal.
func (j *job) later(w func(*store.DB) error) { j.writes = append(j.writes, w) }

// Update is one check that may install: the machine from Ask.
func (a *Engine) Update(ctx context.Context, db *store.DB, c *Current) (*result.Result, error) {
	j, err := a.newJob(db, c, store.Journal{})
	if err != nil {
		return nil, err
	}
	return j.finish(ctx, Ask)
}

// finish runs the machine from state from and makes the result: the active slot is never
// touched before the switch, and everything half-made is cleaned up.
func (j *job) finish(ctx context.Context, from State) (res *result.Result, err error) {
	db := j.db
	defer func() {
		if j.resp != nil {
			j.resp.Body.Close()
		}
		if j.St != nil && !j.sealed {
			j.St.Abort()
		}
		if j.done {
			if ferr := j.Finished(); ferr != nil {
				j.a.Log.Warn("could not clear the downloads and records of what was installed", "err", ferr)
			}
		}
		if err != nil && res == nil {
			res = result.Failed(err)
			res.Bytes, res.Offered = j.Bytes, j.Offered()
		}
	}()
	if err := j.run(ctx, from); err != nil {
		return nil, err
	}
	if j.Deferred == nil { // no answer to decide on (a 304): what was deferred before
		j.Deferred, _ = j.db.Deferred()
	}
	j.res.Deferred = j.Deferrals()
	if j.made.gen == 0 || !j.DirChange || j.res.Result == result.Staged {
		return j.res, nil // up to date, only the OS image changed, or staged
	}
	cur, err := db.State()
	if err != nil {
		return nil, err
	}
	if cur == nil || cur.N != j.made.gen {
		j.res.Result, j.res.Slot, j.res.Switched = result.FailedResult, "", false
		if cur != nil {
			j.res.Slot = cur.Slot
		}
		return j.res, fmt.Errorf("%w to slot %s (%s)", ErrRolledBack, orNothing(j.res.Slot), cmp.Or(j.rec.Reason, "health check failed"))
	}
	return j.res, nil
}

// made is how the run went.
type made struct {
	gen    int64 // the number of the generation made (the journal's next may become a rollback's)
	sealed bool  // the staging directory became a slot
	done   bool  // downloads and old refusals may go
}
