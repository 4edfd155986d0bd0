package update

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

// holdText says why a verified release is not installed (planRules.hold).
var holdText = map[string]string{
	"refused":   "this release was refused on this device earlier (ota-agent retry APP clears it)",
	"installed": "the server sent the bytes already installed",
}

// dropHeld removes the payload members the plan does not install (held back by its rules).
func (j *job) dropHeld() error {
	want := map[string]bool{}
	for _, item := range j.plan.Download {
		want[item.Member()] = true
	}
	for m := range j.got {
		if !want[m] {
			if err := j.st.Remove(delivery.Incoming(m)); err != nil {
				return err
			}
			delete(j.got, m)
		}
	}
	return nil
}

func (j *job) isOS(app string) bool { return j.parts != nil && app == j.osApp }

// budget counts a failed install of a release (install.max_attempts): at the last attempt
// the release is refused like one that failed its health check, so the device stops
// fetching it until the server offers another (or ota-agent retry). What counts is what a
// retry cannot fix: a signature or statement refused, a rollback; and wrong bytes (size or
// hash) by the times the very same bytes (by SHA-256) arrived, so only a file the CDN really
// serves reaches the limit. A transfer damaged on the way differs each time: it is fetched
// again at the next check without burning the release.
func (a *Engine) budget(db *store.DB, item PlanItem, md5, gotSHA string, err error) error {
	if md5 == "" {
		return err
	}
	var n int
	var cerr error
	if errors.Is(err, trust.ErrWrongBytes) {
		if n, cerr = db.Receipt(md5, gotSHA); cerr == nil && n == 1 {
			return fmt.Errorf("%w (not counted toward install.max_attempts until the same bytes arrive again: a damaged transfer differs each time; the next check fetches it again)", err)
		}
	} else {
		n, cerr = db.Attempt(md5)
	}
	if cerr != nil || n < a.Cfg.Install.MaxAttempts {
		return err
	}
	reason := fmt.Sprintf("gave up after %d failed installs: %v", n, err)
	if rerr := db.Refuse(md5, store.Refusal{App: item.App, Version: item.Version, Reason: reason, Time: a.now(db)}); rerr != nil {
		return err
	}
	db.ForgetAttempts(md5)
	db.ForgetReceipts(md5)
	a.Log.Error("release refused: install.max_attempts reached", "app", item.App, "version", item.Version, "attempts", n)
	return fmt.Errorf("%w; gave up after %d attempts (install.max_attempts): not fetched again until the server offers another release or ota-agent retry %s", err, n, item.App)
}

// finished drops what an installed (or refused) release no longer needs: its downloads, and
// earlier refusals of the same app (the server offered something else).
func (j *job) finished() {
	for _, item := range j.plan.Download {
		if j.mode == protocol.ModeMetadata {
			j.fetcher().Drop(item.Member())
		}
		j.db.ForgetRefusals(item.App, j.res.Apps[item.App].MD5)
		j.db.ForgetAttempts(j.res.Apps[item.App].MD5)
		j.db.ForgetReceipts(j.res.Apps[item.App].MD5)
	}
}
