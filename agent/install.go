package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// job is one install, from the server's 200 answer to the switched (or refused) generation.
// The active slot is never touched before the switch: any error leaves the old set active
// and the database as it was.
type job struct {
	a         *Agent
	db        *store.DB
	mode      string
	state     *store.State
	installed map[string]store.App
	active    string // "" before the first install
	st        *installer.Staging
	details   *packaging.Details
	plan      *Plan
	got       map[string]packaging.Digests // member → digests of what arrived
	next      *store.Generation
	res       *Result
	parts     *installer.Partitions // nil: the OS image is an app like the others
	osApp     string
	osItem    *PlanItem
	osRec     store.App
	dirChange bool
	bytes     int64 // received so far, reported even when the install fails
}

// install runs the phases in order: receive → plan → verify → compose → (OS) → commit.
func (a *Agent) install(ctx context.Context, db *store.DB, state *store.State, installed map[string]store.App, resp *http.Response, mode string) (res *Result, err error) {
	j := &job{a: a, db: db, mode: mode, state: state, installed: installed, parts: a.partitions(), osApp: a.osApp(), got: map[string]packaging.Digests{}}
	defer func() {
		if err != nil && res == nil {
			res = failed(err)
			res.Bytes = j.bytes
		}
	}()
	active, err := a.slots.Active()
	if err != nil && !errors.Is(err, installer.ErrNoSlot) {
		return nil, err
	}
	j.active = active
	target := installer.SlotA
	if active != "" {
		target = installer.Other(active)
	}
	if j.st, err = a.slots.Stage(target); err != nil {
		return nil, err
	}
	sealed, done := false, false
	defer func() {
		if !sealed {
			j.st.Abort()
		}
		if done {
			j.finished()
		}
	}()
	if err := j.receive(ctx, resp); err != nil {
		return nil, err
	}
	if err := j.verifyAll(ctx); err != nil {
		return nil, err
	}
	if err := j.compose(); err != nil {
		return nil, err
	}
	a.step("verified")
	if err := j.installOS(ctx); err != nil {
		return nil, err
	}
	if !j.dirChange {
		j.res.Slot, done = active, true // only the OS changed: the directory slots stay
		return j.res, nil
	}
	if err := a.runHook(ctx, "pre_install", a.cfg.Hooks.PreInstall, a.hookEnv(j.next, active)); err != nil {
		return nil, fmt.Errorf("hooks.pre_install refused the install: %w", err)
	}
	if err := j.st.Seal(installer.Manifest{Generation: j.next.N, Apps: j.next.Apps}); err != nil {
		return nil, fmt.Errorf("seal slot %s: %w", target, err)
	}
	sealed = true
	a.step("sealed")
	if err := a.switchTo(ctx, db, state, j.next); err != nil {
		return nil, err
	}
	done = true
	if cur, _ := db.State(); cur == nil || cur.N != j.next.N {
		j.res.Result, j.res.Slot = ResultFailed, ""
		if cur != nil {
			j.res.Slot = cur.Slot
		}
		return j.res, fmt.Errorf("%w: the new generation failed its health check and was rolled back to slot %s", ErrRejected, orNothing(j.res.Slot))
	}
	return j.res, nil
}

// receive streams the full payload into staging, or reads the metadata and downloads each
// changed binary; then the plan is known.
func (j *job) receive(ctx context.Context, resp *http.Response) error {
	var err error
	if j.mode == modeFull {
		j.details, j.got, j.bytes, err = j.a.receiveFull(resp, j.st)
	} else if j.details, err = packaging.DecodeDetails(resp.Body); err != nil {
		err = fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if err != nil {
		return err
	}
	j.a.step("received")
	if j.plan, err = makePlan(j.details, j.installed); err != nil {
		return err
	}
	if j.mode == modeFull {
		if err := sameMembers(j.plan, j.got); err != nil {
			return err
		}
	} else {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
		if err := j.a.cleanDownloads(j.plan); err != nil {
			return err
		}
		if err := j.a.checkSpace(j.plan, j.details.Entries); err != nil {
			return err
		}
		for _, item := range j.plan.Download {
			d, n, err := j.a.download(ctx, j.db, item, j.details.Entries[item.App], j.st)
			j.bytes += n
			if err != nil {
				return err
			}
			j.got[item.Member()] = d
		}
	}
	j.a.step("downloaded")
	gen := int64(0)
	if j.state != nil {
		gen = j.state.N
		if j.state.Previous != nil {
			gen = max(gen, j.state.Previous.N) // numbers never repeat, even after a rollback
		}
	}
	j.next = &store.Generation{N: gen + 1, Slot: j.st.Slot(), Apps: map[string]store.App{}}
	j.res = &Result{Result: ResultUpdated, Slot: j.st.Slot(), Apps: map[string]AppResult{}, Bytes: j.bytes}
	return nil
}

// verifyAll checks every received binary and moves it to its place in the staging slot.
func (j *job) verifyAll(ctx context.Context) error {
	j.a.Status("verifying")
	for _, item := range j.plan.Download {
		var have *store.App
		if h, ok := j.installed[item.App]; ok {
			have = &h
		}
		rec, err := j.a.verify(ctx, item.App, j.details.Entries[item.App], j.got[item.Member()], have)
		if err != nil {
			if j.mode == modeMetadata {
				j.a.dropDownload(j.db, item.Member()) // never resume from bytes that failed verification
			}
			return err
		}
		j.res.Apps[item.App] = AppResult{Version: rec.Version, MD5: rec.MD5, SHA256: rec.SHA256, Serial: rec.Serial, Changed: have == nil || have.MD5 != rec.MD5}
		j.a.log.Info("verified", "app", item.App, "version", rec.Version, "bytes", rec.Size, "signed", rec.Signed, "serial", rec.Serial)
		if j.isOS(item.App) {
			j.osItem, j.osRec = &item, rec // goes to a partition, not into the directory slot
			continue
		}
		if err := j.st.Rename(incoming(item.Member()), item.App); err != nil {
			return err
		}
		j.next.Apps[item.App] = rec
		j.dirChange = true
	}
	return nil
}

func (j *job) isOS(app string) bool { return j.parts != nil && app == j.osApp }

// compose carries unchanged apps over from the active slot and notes removals.
func (j *job) compose() error {
	for _, app := range j.plan.Keep {
		x := j.installed[app]
		j.res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		if j.isOS(app) {
			continue
		}
		if err := j.st.CarryOver(app, j.active); err != nil {
			return err
		}
		j.next.Apps[app] = x
	}
	for _, app := range j.plan.Remove {
		if j.isOS(app) {
			continue
		}
		j.a.log.Info("removing: no longer offered", "app", app, "version", j.installed[app].Version)
		j.dirChange = true
	}
	return nil
}

// installOS puts a new OS image on its partition; the staged copy then leaves the slot.
func (j *job) installOS(ctx context.Context) error {
	if j.osItem == nil {
		return nil
	}
	staged := incoming(j.osItem.Member())
	f, err := j.st.Open(staged)
	if err != nil {
		return err
	}
	err = j.a.installOS(ctx, j.db, j.parts, j.osApp, f, j.osRec)
	f.Close()
	if err != nil {
		return err
	}
	return j.st.Remove(staged)
}

// finished drops what an installed (or refused) release no longer needs: its downloads, and
// earlier refusals of the same app (the server offered something else).
func (j *job) finished() {
	for _, item := range j.plan.Download {
		if j.mode == modeMetadata {
			j.a.dropDownload(j.db, item.Member())
		}
		j.db.ForgetRefusals(item.App, j.res.Apps[item.App].MD5)
	}
}
