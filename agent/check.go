package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/checklog"
	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Check runs one update cycle under the state directory's lock and records it. The error's
// class (ErrConfig, ErrUnavailable, ErrRejected) decides the exit code.
func (a *Agent) Check(ctx context.Context, opt CheckOptions) (*Result, error) {
	if err := a.Cfg.RequireServer(); err != nil {
		return result.Failed(err), err
	}
	if opt.DryRun {
		return a.dryRun(ctx, opt)
	}
	unlock, err := a.Lock()
	if err != nil {
		return result.Failed(err), err
	}
	defer unlock()
	db, err := a.openRecovered(ctx)
	if err != nil {
		return result.Failed(err), err
	}
	defer db.Close()
	return a.CheckWith(ctx, db, opt)
}

// dryRun asks the server what would change without the lock and without writing a byte: the
// database is opened read-only (a daemon may be running; the state directory may be on a
// read-only mount), or, before the first install, a throwaway empty one outside state_dir.
func (a *Agent) dryRun(ctx context.Context, opt CheckOptions) (*Result, error) {
	db, err := a.OpenDBReadOnly()
	if errors.Is(err, ErrNothingInstalled) {
		db, err = store.OpenTemp()
	}
	if err != nil {
		return result.Failed(err), err
	}
	defer db.Close()
	return a.CheckWith(ctx, db, opt)
}

// CheckWith runs one cycle on an open database that Recover has made consistent (the
// daemon's path): what Recover left to resume (a generation on trial, a new OS image
// booted) first, the trust documents, a staged generation whose install window opened,
// then the server is asked.
func (a *Agent) CheckWith(ctx context.Context, db *store.DB, opt CheckOptions) (*Result, error) {
	start := time.Now()
	if !opt.DryRun {
		if err := a.Resume(ctx, db); err != nil {
			return result.Failed(err), err
		}
	}
	var res *Result
	var err error
	if !opt.DryRun {
		// The trust documents: failures are logged (trust.go); the held keys still verify.
		a.Trust.RefreshKeys(ctx, db, false)
		a.Trust.CheckTimestamp(ctx, db)
		res, err = a.ApplyStaged(ctx, db, false) // an install window opened
	}
	if res == nil && err == nil {
		res, err = a.check(ctx, db, opt)
	}
	if err != nil && ctx.Err() != nil {
		// A signal (SIGTERM, SIGINT) ended it, not the network: say so.
		err = fmt.Errorf("%w by a signal (%v); what was received is kept and the next check goes on from there", ErrInterrupted, context.Cause(ctx))
	}
	if err != nil {
		res = result.FailedAfter(err, res) // what arrived before the failure still counts
		if s, _ := db.State(); s != nil {
			res.Slot = s.Slot // the slot the device is on after the failure
		}
	}
	if refused, rerr := db.Refusals(); rerr == nil {
		for md5, r := range refused {
			if res.Refused == nil {
				res.Refused = map[string]Refusal{}
			}
			res.Refused[md5] = Refusal(r)
		}
	}
	if !opt.DryRun {
		err = a.recordCheck(db, res, err, time.Since(start))
		a.report(ctx, db)
	}
	level := slog.LevelInfo
	switch {
	case err == nil:
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrInterrupted):
		level = slog.LevelWarn // try later
	default:
		level = slog.LevelError
	}
	attrs := []any{"result", res.Result, "slot", res.Slot, "bytes", res.Bytes, "duration", time.Since(start).Round(time.Millisecond).String()}
	if res.Error != "" {
		attrs = append(attrs, "error", res.Error)
	}
	a.Log.Log(ctx, level, "check", attrs...)
	return res, err
}

// RequestKey is what the edge caches the device's next check under (for NextCheck).
func (a *Agent) RequestKey(db *store.DB) string {
	c, err := a.Current(db)
	if err != nil {
		return ""
	}
	return c.Facts.Query(protocol.PayloadParam(a.Proto.PayloadMode(db))) + "\x00" + c.INM
}

func (a *Agent) check(ctx context.Context, db *store.DB, opt CheckOptions) (*Result, error) {
	c, err := a.Current(db)
	if err != nil {
		return nil, err
	}
	state, installed, facts := c.State, c.Installed, c.Facts
	if state != nil && len(state.Damaged) > 0 && !opt.DryRun {
		a.Log.Warn("asking the server again for apps found damaged on disk", "apps", strings.Join(slices.Sorted(maps.Keys(state.Damaged)), ","))
	}
	if !opt.DryRun {
		return a.Update(ctx, db, c)
	}
	a.Status("checking " + a.Cfg.Server.URL)
	ans, _, err := a.Proto.FetchAnswer(ctx, db, facts, c.INM, protocol.ModeMetadata, true) // the plan without the payload
	if err != nil {
		return nil, err
	}
	defer ans.Resp.Body.Close()
	if ans.Status == http.StatusNotModified {
		res := result.UpToDate(state)
		res.Plan = &Plan{}
		return res, nil
	}
	d, err := packaging.DecodeDetails(ans.Resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if _, err := a.Proto.ResolvePins(ctx, c.Facts, c.INM, installed, d, nil); err != nil {
		return nil, err
	}
	rules, err := a.Rules(db, state)
	if err != nil {
		return nil, err
	}
	plan, err := protocol.MakePlan(d, installed, rules)
	if err != nil {
		return nil, err
	}
	a.DryDefer(ctx, db, facts, d, installed, plan) // what phased rollouts keep out (nothing recorded)
	active, _ := a.Slots.Active()
	probe := delivery.New(delivery.Options{Cfg: a.Cfg, Log: a.Log, HTTP: a.HTTP, Slots: a.Slots, DB: db, Proto: a.Proto,
		OS: a.OS(), From: active, Installed: installed})
	for i, item := range plan.Download {
		plan.Download[i].Via, plan.Download[i].Patch = probe.Probe(ctx, item, d.Entries[item.App])
	}
	res := result.UpToDate(state)
	res.Plan = plan
	if len(plan.Download)+len(plan.Remove) > 0 {
		res.Result = ResultAvailable
	}
	return res, nil
}

// checkLog is where this agent's checks are recorded (internal/checklog).
func (a *Agent) checkLog(db *store.DB) checklog.Log {
	return checklog.Log{DB: db, RuntimeDir: a.Cfg.Path(a.Cfg.RuntimeDir), StateDir: a.Slots.Dir}
}

// recordCheck keeps the check's record, the time floor, the counters and the metrics; it
// returns err, or the first error of keeping them.
func (a *Agent) recordCheck(db *store.DB, res *Result, err error, took time.Duration) error {
	rec := store.CheckRecord{Time: a.now(db), Result: res.Result, Duration: took, Bytes: res.Bytes, Removed: res.Removed, Unlisted: res.Unlisted,
		Class: fault.Class(err), Offered: res.Offered}
	var saved int64
	for app, x := range res.Apps {
		if x.Path != "" {
			if rec.Via == nil {
				rec.Via = map[string]store.Delivery{}
			}
			rec.Via[app] = x.Delivery
		}
		if x.Path == DeliveryPatch || x.Path == DeliveryChunks {
			saved += x.Size - x.Downloaded
		}
	}
	if err != nil {
		rec.Error = err.Error()
	}
	// One commit for the record, the time floor and the counters (none for a quiet check).
	_, rerr := a.checkLog(db).Record(rec, a.Clock.Floor(), func(c *store.Counters) {
		c.Checks++
		c.DownloadedBytes += res.Bytes
		c.DeltaSavedBytes += saved
		switch res.Result {
		case ResultFailed:
			c.FailedChecks++
		case ResultUpdated:
			c.Updates++
		}
	}, a.Log.Warn)
	if rerr != nil && err == nil {
		err = rerr
	}
	if merr := a.writeMetrics(db); merr != nil {
		a.Log.Warn("metrics not written", "error", merr)
	}
	return err
}
