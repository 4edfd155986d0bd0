package assemble

import (
	"errors"
	"fmt"

	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/store"
)

// What a verified release does not get: set aside by the plan's rules, or counted toward
// install.max_attempts when it fails.

// Rules are the plan rules of this agent (protocol.Rules): with trust keys an unsigned
// answer removes nothing unless trust.allow_unsigned_removals; the database's refusals and
// damage.
func (e Env) Rules(db *store.DB, state *store.State) (protocol.Rules, error) {
	r := protocol.Rules{RemoveUnlisted: !e.Keyed || e.Cfg.Trust.AllowUnsignedRemovals}
	var err error
	if r.Refused, err = db.Refusals(); err != nil {
		return r, err
	}
	if state != nil {
		r.Damaged = state.Damaged
	}
	deferred, err := db.Deferred()
	for m, d := range deferred {
		if d.Pending(e.Now()) {
			if r.Deferred == nil {
				r.Deferred = map[string]store.Deferral{}
			}
			r.Deferred[m] = d
		}
	}
	return r, err
}

// holdText says why a verified release is not installed (protocol.Rules.Hold).
var holdText = map[string]string{
	"refused":   "this release was refused on this device earlier (ota-agent retry APP clears it)",
	"installed": "the server sent the bytes already installed",
	"deferred":  "a phased rollout keeps it from this device for now",
}

// dropHeld removes the payload members the plan does not install (held back by its rules).
func (a *Assembly) dropHeld() error {
	want := map[string]bool{}
	for _, item := range a.Plan.Download {
		want[item.Member()] = true
	}
	for m := range a.Got {
		if !want[m] {
			if err := a.St.Remove(delivery.Incoming(m)); err != nil {
				return err
			}
			delete(a.Got, m)
		}
	}
	return nil
}

// budget counts a failed install of a release (install.max_attempts): at the last attempt
// the release is refused like one that failed its health check, so the device stops
// fetching it until the server offers another (or ota-agent retry). What counts is what a
// retry cannot fix: a signature or statement refused, a rollback; and wrong bytes (size or
// hash) by the times the very same bytes (by SHA-256) arrived, so only a file the CDN really
// serves reaches the limit. A transfer damaged on the way differs each time: it is fetched
// again at the next check without burning the release.
func (a *Assembly) budget(item protocol.PlanItem, md5, gotSHA string, err error) error {
	if md5 == "" {
		return err
	}
	var n int
	var cerr error
	if errors.Is(err, trust.ErrWrongBytes) {
		if n, cerr = a.DB.Receipt(md5, gotSHA); cerr == nil && n == 1 {
			return fmt.Errorf("%w (not counted toward install.max_attempts until the same bytes arrive again: a damaged transfer differs each time; the next check fetches it again)", err)
		}
	} else {
		n, cerr = a.DB.Attempt(md5)
	}
	if cerr != nil {
		return fmt.Errorf("%w (and counting it toward install.max_attempts failed: %v)", err, cerr)
	}
	if n < a.Cfg.Install.MaxAttempts {
		return err
	}
	reason := fmt.Sprintf("gave up after %d failed installs: %v", n, err)
	if rerr := a.DB.Refuse(md5, store.Refusal{App: item.App, Version: item.Version, Reason: reason, Time: a.Now()}); rerr != nil {
		return fmt.Errorf("%w (and refusing it after %d attempts failed: %v)", err, n, rerr)
	}
	if ferr := errors.Join(a.DB.ForgetAttempts(md5), a.DB.ForgetReceipts(md5)); ferr != nil {
		a.Log.Warn("could not clear the attempts of a refused release", "app", item.App, "err", ferr)
	}
	a.Log.Error("release refused: install.max_attempts reached", "app", item.App, "version", item.Version, "attempts", n)
	return fmt.Errorf("%w; gave up after %d attempts (install.max_attempts): not fetched again until the server offers another release or ota-agent retry %s", err, n, item.App)
}

// Finished drops what an installed (or refused) release no longer needs: its downloads, and
// earlier refusals, attempts and receipts of the same app (the server offered something else).
func (a *Assembly) Finished() error {
	if a.Plan == nil {
		return nil
	}
	if a.Mode == protocol.ModeMetadata {
		fetch := a.fetcher()
		for _, item := range a.Plan.Download {
			fetch.Drop(item.Member())
		}
	}
	return a.DB.Batch(func(db *store.DB) error { // one commit for every app
		var errs []error
		for _, item := range a.Plan.Download {
			md5 := a.Apps[item.App].MD5
			errs = append(errs, db.ForgetRefusals(item.App, md5), db.ForgetAttempts(md5), db.ForgetReceipts(md5))
		}
		return errors.Join(errs...)
	})
}
