package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// job is one run of the update state machine (machine.go): from asking the server to the
// switched (or refused) generation, or a generation's trial after a restart. The active slot
// is never touched before the switch: any error leaves the old set active and the database
// as it was.
type job struct {
	a  *Agent
	db *store.DB
	asking
	staging
	osImage
	made
}

// asking is what the device says and what the server answered.
type asking struct {
	c          *current // facts, installed set, If-None-Match
	mode       string   // full | metadata
	state      *store.State
	installed  map[string]store.App
	resp       *http.Response // the server's 200 (or an offline payload)
	offline    bool           // `ota-agent install`: apps not in the payload are kept
	offlineDir string         // ... from a directory of binaries and .release files
}

// staging is what arrived and where it is being assembled.
type staging struct {
	active  string // "" before the first install
	from    string // where unchanged apps are carried over from: the active slot, or a staged one
	st      *installer.Staging
	details *packaging.Details
	plan    *Plan
	got     map[string]packaging.Digests // member → digests of what arrived
	bytes   int64                        // received so far, reported even when the install fails
	via     map[string]Delivery          // app → how it arrived
}

// osImage is the OS image's part (slots.os.backend: partition).
type osImage struct {
	parts  *installer.Partitions // nil: the OS image is an app like the others
	osApp  string
	osItem *PlanItem
	osRec  store.App
	os     *store.OSState
}

// made is the generation made and how it went.
type made struct {
	next      *store.Generation
	res       *Result
	dirChange bool         // the directory slots change (else only the OS image did)
	sealed    bool         // the staging directory became a slot
	done      bool         // downloads and old refusals may go
	cur       *store.State // the generation switched to, on trial or committed
	reason    string       // why it is rolled back
	byHand    bool         // `ota-agent rollback`: the generation rolled back to is wanted again
	apply     bool         // switch a staged generation now, window or not
}

// ask: the canonical request; a 304 ends the run.
func (j *job) ask(ctx context.Context) (State, error) {
	j.a.Status("checking " + j.a.cfg.Server.URL)
	ans, mode, err := j.a.fetchAnswer(ctx, j.db, j.c.facts, j.c.inm, j.mode, false)
	if err != nil {
		return "", err
	}
	j.mode = mode
	if ans.status == http.StatusNotModified {
		ans.resp.Body.Close()
		j.res = upToDate(j.state)
		return Idle, nil
	}
	j.resp = ans.resp
	return Staging, nil
}

// stage receives the payload (or the downloads) into a fresh staging directory.
func (j *job) stage(ctx context.Context) (State, error) {
	active, err := j.a.slots.Active()
	if err != nil && !errors.Is(err, installer.ErrNoSlot) {
		return "", err
	}
	j.active = active
	if j.from == "" {
		j.from = active
	}
	target := installer.SlotA
	if active != "" {
		target = installer.Other(active)
	}
	if j.st, err = j.a.slots.Stage(target); err != nil {
		return "", err
	}
	return Verifying, j.receive(ctx, j.resp)
}

func (j *job) verifyState(ctx context.Context) (State, error) { return Composing, j.verifyAll(ctx) }

// composeState carries unchanged apps over; an OS image goes to its partition next.
func (j *job) composeState(ctx context.Context) (State, error) {
	if err := j.compose(); err != nil {
		return "", err
	}
	if j.osItem != nil {
		return Written, j.writeOS()
	}
	return j.seal(ctx)
}

// seal runs the pre_install hook and seals the staging directory into the new slot.
func (j *job) seal(ctx context.Context) (State, error) {
	if !j.dirChange {
		j.res.Slot, j.done = j.active, true
		if j.osItem == nil {
			j.res.Result, j.res.Note = ResultUpToDate, j.plan.nothingNote()
		}
		return Idle, nil
	}
	if err := j.a.runHook(ctx, "pre_install", j.a.cfg.Hooks.PreInstall, j.a.hookEnv(j.next, j.active)); err != nil {
		return "", fmt.Errorf("hooks.pre_install refused the install: %w", err)
	}
	if err := j.st.Seal(installer.Manifest{Generation: j.next.N, Apps: j.next.Apps}); err != nil {
		return "", fmt.Errorf("seal slot %s: %w", j.st.Slot(), err)
	}
	j.sealed = true
	return Sealed, nil
}

// afterEnv: the OS image waits for its reboot (run now when slots.os.reboot says how); the
// directory slots follow.
func (j *job) afterEnv(ctx context.Context) (State, error) {
	if cmd := j.a.cfg.Slots.OS.Reboot; cmd != "" {
		if err := j.a.runHook(ctx, "slots.os.reboot", cmd, []string{"OTA_OS_SLOT=" + j.os.Try}); err != nil {
			return "", err
		}
	} else {
		j.a.Status(fmt.Sprintf("reboot to try OS slot %s", j.os.Try))
	}
	return j.seal(ctx)
}

// switchLink points `current` at the new slot.
func (j *job) switchLink(context.Context) (State, error) {
	return Switched, j.a.slots.Switch(j.next.Slot)
}

// record makes the new generation the active one: on trial with a health hook, else
// committed.
func (j *job) record(context.Context) (State, error) {
	s := j.a.newState(j.state, j.next)
	if err := j.db.SetState(s); err != nil {
		return "", err
	}
	j.done, j.cur, j.res.Switched = true, s, true
	j.a.log.Info("switched", "slot", s.Slot, "generation", s.N, "status", s.Status)
	if j.state != nil && len(j.state.Damaged) > 0 {
		j.a.repaired(j.db, j.state, j.next)
	}
	if len(s.Restart) > 0 {
		return Restarting, nil
	}
	if s.Status == store.StatusTrial {
		return Trial, nil
	}
	j.a.forgetRefusals(j.db, s)
	return Committed, nil
}

// trial judges the new generation (health.go): success commits, failure rolls back.
func (j *job) trial(ctx context.Context) (State, error) {
	s := j.cur
	j.a.Status(fmt.Sprintf("health check of slot %s", s.Slot))
	if err := j.a.judge(ctx, s.Apps, j.a.hookEnv(&s.Generation, "")); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err() // stopped: the next start counts a trial
		}
		j.reason = "health check failed: " + err.Error()
		return RollingBack, nil
	}
	s.Status = store.StatusCommitted
	if err := j.db.SetState(s); err != nil {
		return "", err
	}
	j.a.log.Info("committed", "slot", s.Slot, "generation", s.N)
	j.a.forgetRefusals(j.db, s)
	return Committed, nil
}

// committed runs post_commit (its failure leaves the generation committed).
func (j *job) committed(ctx context.Context) (State, error) {
	if err := j.a.runHook(ctx, "post_commit", j.a.cfg.Hooks.PostCommit, j.a.hookEnv(&j.cur.Generation, "")); err != nil {
		j.a.log.Warn("hooks.post_commit failed (the generation stays committed)", "error", err)
	}
	return Idle, nil
}

// rollBack returns to the previous generation and refuses the failed release (not when
// asked by hand). Its journalled switch has crash points of its own (rollback-pending,
// rollback-switched).
func (j *job) rollBack(context.Context) (State, error) {
	if err := j.a.rollback(j.db, j.reason); err != nil {
		return "", err
	}
	if j.byHand { // wanted again: a refusal of what it holds ends (a rollback of a rollback)
		if s, err := j.db.State(); err == nil && s != nil {
			for _, x := range s.Apps {
				j.db.Unrefuse(x.MD5)
			}
		}
	}
	if s, err := j.db.State(); err != nil || s != nil && len(s.Restart) > 0 {
		return Restarting, err // the units run the generation rolled back to
	}
	return Idle, nil
}

// receive streams the full payload into staging, or reads the metadata and downloads each
// changed binary; then the plan is known.
func (j *job) receive(ctx context.Context, resp *http.Response) error {
	var err error
	if j.offlineDir != "" {
		j.details, j.got, j.bytes, err = j.a.receiveDir(j.offlineDir, j.st)
	} else if j.mode == modeFull {
		j.details, j.got, j.bytes, err = j.a.receiveFull(resp, j.st)
	} else if j.details, err = packaging.DecodeDetails(resp.Body); err != nil {
		err = fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if err != nil {
		return err
	}
	if err := j.settleAnswer(ctx); err != nil {
		return err
	}
	rules, err := j.a.rules(j.db, j.state)
	if err != nil {
		return err
	}
	if j.plan, err = makePlan(j.details, j.installed, rules); err != nil {
		return err
	}
	if j.mode == modeFull {
		if err := sameMembers(j.details, j.got); err != nil {
			return err
		}
		if err := j.dropHeld(); err != nil {
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
			e := j.details.Entries[item.App]
			d, n, ok, err := j.patched(ctx, item, e)
			j.bytes += n
			j.delivered(item.App, DeliveryPatch, n, e.Size, ok)
			if err == nil && !ok {
				d, n, ok, err = j.chunked(ctx, item, e)
				j.bytes += n
				j.delivered(item.App, DeliveryChunks, n, e.Size, ok)
			}
			if err != nil {
				return err
			}
			if !ok {
				if d, n, err = j.a.download(ctx, j.db, item, e, j.st); err != nil {
					j.bytes += n
					return err
				}
				j.bytes += n
				j.delivered(item.App, DeliveryFull, n, e.Size, true)
			}
			j.got[item.Member()] = d
		}
	}
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

// settleAnswer makes what arrived the answer the plan is made from: pins resolved (the
// server's), or every installed app kept (an offline payload adds; it never removes).
func (j *job) settleAnswer(ctx context.Context) error {
	if !j.offline {
		return j.applyPins(ctx)
	}
	for app, x := range j.installed {
		if _, ok := j.details.Entries[app]; !ok {
			j.details.Set(app, packaging.Entry{LatestVersion: x.Version, StatusCode: 304, MD5: x.MD5})
		}
	}
	return nil
}

// verifyAll checks every received binary and moves it to its place in the staging slot. A
// verified release this device refused, or the very bytes it has, is set aside (the plan's
// rules, now with the real digests: the server's claims were only a first sieve).
func (j *job) verifyAll(ctx context.Context) error {
	j.a.Status("verifying")
	rules, err := j.a.rules(j.db, j.state)
	if err != nil {
		return err
	}
	items := j.plan.Download
	j.plan.Download = nil
	for _, item := range items {
		var have *store.App
		if h, ok := j.installed[item.App]; ok {
			have = &h
		}
		e := j.details.Entries[item.App]
		rec, err := j.a.verify(ctx, j.db, j.facts(), item.App, e, j.got[item.Member()], have)
		if errors.Is(err, errNeedMD5) {
			rec, err = j.verifyRehashed(ctx, item, e, have)
		}
		if err != nil {
			if j.mode == modeMetadata {
				j.a.dropDownload(j.db, item.Member()) // never resume from bytes that failed verification
			}
			return j.a.budget(j.db, item, cmp.Or(e.MD5, j.got[item.Member()].MD5), j.got[item.Member()].SHA256, err)
		}
		if why := rules.hold(item.App, rec.MD5, j.installed); j.plan.held(item.App, why, have != nil) {
			j.a.log.Info("not installed: "+holdText[why], "app", item.App, "version", rec.Version, "md5", rec.MD5)
			if err := j.st.Remove(incoming(item.Member())); err != nil {
				return err
			}
			continue
		}
		j.plan.Download = append(j.plan.Download, item)
		via := j.via[item.App]
		if via.Path == "" && j.mode == modeFull {
			via = Delivery{Path: DeliveryPayload, Size: rec.Size}
		}
		j.res.Apps[item.App] = AppResult{Version: rec.Version, MD5: rec.MD5, SHA256: rec.SHA256, Serial: rec.Serial, Changed: true, Delivery: via}
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

// compose carries unchanged apps over from the active slot and notes removals.
func (j *job) compose() error {
	for _, app := range j.plan.carried() {
		x := j.installed[app]
		j.res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		if j.isOS(app) {
			continue
		}
		if err := j.st.CarryOver(app, j.from); err != nil {
			return err
		}
		j.next.Apps[app] = x
	}
	for _, app := range j.plan.Unlisted {
		j.a.log.Warn("kept: not in the server's answer, and an unsigned answer removes nothing (trust.allow_unsigned_removals)", "app", app, "version", j.installed[app].Version)
	}
	for _, app := range j.plan.Remove {
		if j.isOS(app) {
			continue
		}
		j.a.log.Warn("removing: no longer offered", "app", app, "version", j.installed[app].Version)
		j.res.Removed = append(j.res.Removed, app)
		j.dirChange = true
	}
	j.res.Unlisted = j.plan.Unlisted
	return nil
}
