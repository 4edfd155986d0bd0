package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Check runs one update cycle under the state directory's lock and records it. The error's
// class (ErrConfig, ErrUnavailable, ErrRejected) decides the exit code.
func (a *Agent) Check(ctx context.Context, opt CheckOptions) (*Result, error) {
	unlock, err := a.Lock()
	if err != nil {
		return failed(err), err
	}
	defer unlock()
	db, err := a.OpenDB()
	if err != nil {
		return failed(err), err
	}
	defer db.Close()
	return a.CheckWith(ctx, db, opt)
}

// CheckWith runs one cycle on an open, reconciled database (the daemon's path).
func (a *Agent) CheckWith(ctx context.Context, db *store.DB, opt CheckOptions) (*Result, error) {
	start := time.Now()
	if !opt.DryRun {
		if err := a.ResumeTrial(ctx, db); err != nil {
			return failed(err), err
		}
		if err := a.osTrial(ctx, db); err != nil {
			return failed(err), err
		}
	}
	res, err := a.check(ctx, db, opt)
	if err != nil {
		res = failed(err)
	}
	if !opt.DryRun {
		rec := store.CheckRecord{Time: a.now(db), Result: res.Result, Duration: time.Since(start), Bytes: res.Bytes}
		if err != nil {
			rec.Error = err.Error()
		}
		if rerr := db.RecordCheck(rec); rerr != nil && err == nil {
			err = rerr
		}
		if rerr := db.RaiseTimeFloor(time.Unix(a.clock.floor.Load(), 0)); rerr != nil && err == nil {
			err = rerr
		}
	}
	a.log.Info("check", "result", res.Result, "slot", res.Slot, "bytes", res.Bytes, "duration", time.Since(start).Round(time.Millisecond), "error", res.Error)
	return res, err
}

func failed(err error) *Result {
	return &Result{Result: ResultFailed, Error: err.Error(), Apps: map[string]AppResult{}}
}

func (a *Agent) check(ctx context.Context, db *store.DB, opt CheckOptions) (*Result, error) {
	state, err := db.State()
	if err != nil {
		return nil, err
	}
	installed := map[string]store.App{}
	if state != nil {
		for app, x := range state.Apps {
			installed[app] = x
		}
	}
	osApps, trying, err := a.osInstalled(db)
	if err != nil {
		return nil, err
	}
	for app, x := range osApps {
		installed[app] = x
	}
	facts, err := a.cfg.DeviceFacts()
	if err != nil {
		return nil, err
	}
	refused, err := db.Refusals()
	if err != nil {
		return nil, err
	}
	mode := a.payloadMode(db)
	if opt.DryRun {
		mode = modeMetadata // the plan without the payload
	}
	a.Status("checking " + a.cfg.Server.URL)
	for _, m := range trying {
		refused[m] = store.Refusal{} // on its way in: not a refusal, but not to be sent again
	}
	ans, mode, err := a.fetchAnswer(ctx, db, facts, etags(installed, refused), mode, opt.DryRun)
	if err != nil {
		return nil, err
	}
	defer ans.resp.Body.Close()
	if ans.status == http.StatusNotModified {
		res := upToDate(state)
		if opt.DryRun {
			res.Plan = &Plan{}
		}
		return res, nil
	}
	if opt.DryRun {
		d, err := packaging.DecodeDetails(ans.resp.Body)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRejected, err)
		}
		plan, err := makePlan(d, installed)
		if err != nil {
			return nil, err
		}
		res := upToDate(state)
		res.Plan = plan
		return res, nil
	}
	return a.install(ctx, db, state, installed, ans.resp, mode)
}

func upToDate(state *store.State) *Result {
	res := &Result{Result: ResultUpToDate, Apps: map[string]AppResult{}}
	if state != nil {
		res.Slot = state.Slot
		for app, x := range state.Apps {
			res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		}
	}
	return res
}

// install receives the answer into the inactive slot, verifies it, seals the slot, switches
// to it and records the new generation. Until the switch the active slot is never touched;
// any error leaves the old set active and the database as it was.
func (a *Agent) install(ctx context.Context, db *store.DB, state *store.State, installed map[string]store.App, resp *http.Response, mode string) (*Result, error) {
	active, err := a.slots.Active()
	if err != nil && !errors.Is(err, installer.ErrNoSlot) {
		return nil, err
	}
	target := installer.SlotA
	if active != "" {
		target = installer.Other(active)
	}
	var gen int64
	if state != nil {
		gen = state.N
		if state.Previous != nil {
			gen = max(gen, state.Previous.N) // numbers never repeat, even after a rollback
		}
	}
	st, err := a.slots.Stage(target)
	if err != nil {
		return nil, err
	}
	sealed, done := false, false
	var plan *Plan
	var res *Result
	defer func() {
		if !sealed {
			st.Abort()
		}
		if done && plan != nil {
			for _, item := range plan.Download {
				if mode == modeMetadata {
					a.dropDownload(db, item.Member())
				}
				// The server offered something else for this app: earlier refusals end.
				db.ForgetRefusals(item.App, res.Apps[item.App].MD5)
			}
		}
	}()
	var details *packaging.Details
	got := map[string]packaging.Digests{}
	var bytes int64
	if mode == modeFull {
		details, got, bytes, err = a.receiveFull(resp, st)
	} else {
		details, err = packaging.DecodeDetails(resp.Body)
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrRejected, err)
		}
	}
	if err != nil {
		return nil, err
	}
	a.step("received")
	plan, err = makePlan(details, installed)
	if err != nil {
		return nil, err
	}
	if mode == modeFull {
		if err := sameMembers(plan, got); err != nil {
			return nil, err
		}
	} else {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
		if err := a.cleanDownloads(plan); err != nil {
			return nil, err
		}
		for _, item := range plan.Download {
			d, n, err := a.download(ctx, db, item, details.Entries[item.App], st)
			bytes += n
			if err != nil {
				return nil, err
			}
			got[item.Member()] = d
		}
	}
	a.step("downloaded")
	a.Status("verifying")
	next := &store.Generation{N: gen + 1, Slot: target, Apps: map[string]store.App{}}
	res = &Result{Result: ResultUpdated, Slot: target, Apps: map[string]AppResult{}, Bytes: bytes}
	parts, osApp := a.partitions(), a.osApp()
	var osItem *PlanItem
	var osRec store.App
	dirChanged := false
	for _, item := range plan.Download {
		var have *store.App
		if h, ok := installed[item.App]; ok {
			have = &h
		}
		rec, err := a.verify(ctx, item.App, details.Entries[item.App], got[item.Member()], have)
		if err != nil {
			if mode == modeMetadata {
				a.dropDownload(db, item.Member()) // never resume from bytes that failed verification
			}
			return nil, err
		}
		res.Apps[item.App] = AppResult{Version: rec.Version, MD5: rec.MD5, SHA256: rec.SHA256, Serial: rec.Serial, Changed: have == nil || have.MD5 != rec.MD5}
		if item.App == osApp && parts != nil {
			osItem, osRec = &item, rec // goes to a partition, not into the directory slot
			continue
		}
		if err := st.Rename(incoming(item.Member()), item.App); err != nil {
			return nil, err
		}
		next.Apps[item.App] = rec
		dirChanged = true
		a.log.Info("verified", "app", item.App, "version", rec.Version, "bytes", rec.Size, "signed", rec.Signed, "serial", rec.Serial)
	}
	for _, app := range plan.Keep {
		x := installed[app]
		res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		if app == osApp && parts != nil {
			continue
		}
		if err := st.CarryOver(app, active); err != nil {
			return nil, err
		}
		next.Apps[app] = x
	}
	for _, app := range plan.Remove {
		if app == osApp && parts != nil {
			continue
		}
		a.log.Info("removing: no longer offered", "app", app, "version", installed[app].Version)
		dirChanged = true
	}
	a.step("verified")
	if osItem != nil {
		if err := a.installOS(ctx, db, parts, osApp, filepath.Join(st.Dir(), incoming(osItem.Member())), osRec); err != nil {
			return nil, err
		}
		if err := st.Remove(incoming(osItem.Member())); err != nil { // on its partition now
			return nil, err
		}
	}
	if !dirChanged {
		res.Slot, done = active, true // only the OS changed: the directory slots stay as they are
		return res, nil
	}
	if err := a.runHook(ctx, "pre_install", a.cfg.Hooks.PreInstall, a.hookEnv(next, active)); err != nil {
		return nil, fmt.Errorf("hooks.pre_install refused the install: %w", err)
	}
	if err := st.Seal(installer.Manifest{Generation: next.N, Apps: next.Apps}); err != nil {
		return nil, fmt.Errorf("seal slot %s: %w", target, err)
	}
	sealed = true
	a.step("sealed")
	if err := a.switchTo(ctx, db, state, next); err != nil {
		return nil, err
	}
	done = true

	if cur, _ := db.State(); cur == nil || cur.N != next.N {
		res.Result, res.Slot = ResultFailed, ""
		if cur != nil {
			res.Slot = cur.Slot
		}
		return res, fmt.Errorf("%w: the new generation failed its health check and was rolled back to slot %s", ErrRejected, orNothing(res.Slot))
	}
	return res, nil
}

// sameMembers: the set of files must equal what package_details.json promises.
func sameMembers(plan *Plan, got map[string]packaging.Digests) error {
	want := map[string]bool{}
	for _, d := range plan.Download {
		want[d.Member()] = true
		if _, ok := got[d.Member()]; !ok {
			return fmt.Errorf("%w: package_details.json lists %s %s with status 200 but the payload has no member %s", ErrRejected, d.App, d.Version, d.Member())
		}
	}
	for m := range got {
		if !want[m] {
			return fmt.Errorf("%w: payload member %s is not listed with status 200 in package_details.json (two rows of one app selected? check device attributes)", ErrRejected, m)
		}
	}
	return nil
}

func orNothing(s string) string {
	if s == "" {
		return "none (first install)"
	}
	return s
}
