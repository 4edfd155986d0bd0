package agent

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/checklog"
	"github.com/ota-agent/ota-agent/internal/daemon"
	"github.com/ota-agent/ota-agent/store"
)

// keepQuiet remembers the full check just made for the daemon's next poll
// (checklog.Repeat), or forgets any. Never when each check fetches the trust timestamp
// (trust.max_staleness) or writes metrics (metrics.textfile), or while an update, an
// install window, a health trial or an OS image's trial is pending.
func (a *Agent) keepQuiet(db *store.DB, res *Result, err error) {
	a.quiet = nil
	if err != nil || res == nil || res.Result != ResultUpToDate || a.Cfg.Trust.MaxStaleness > 0 || a.Cfg.Metrics.Textfile != "" {
		return
	}
	j, _ := db.Journal()
	g, _ := db.Staged()
	s, _ := db.State()
	o := a.OSStatus(db)
	id, ierr := a.stateIdent()
	if j != nil || g != nil || s == nil || s.Status != store.StatusCommitted || o != nil && o.Try != "" || ierr != nil {
		return
	}
	key := a.RequestKey(db)
	query, inm, _ := strings.Cut(key, "\x00")
	a.quiet = a.checkLog(db).Repeat(checklog.Repeat{Query: query, INM: inm, Key: key, Slot: res.Slot}, id, a.Clock.Now(),
		a.Cfg.Verify.Interval, a.Cfg.Trust.KeysRefresh, a.NextTurn(db).Sub(a.Clock.Now()))
}

// pollQuiet sends the repeat kept by keepQuiet; ok is false when the full check must run,
// as it must for a check the operator asked for (SIGUSR1).
func (a *Agent) pollQuiet(ctx context.Context) (daemon.Outcome, bool) {
	q := a.quiet
	a.quiet = nil // kept again only when this poll is quiet
	if q == nil || daemon.Asked(ctx) {
		return daemon.Outcome{}, false
	}
	if id, err := a.stateIdent(); err != nil || !q.Fits(a.Clock.Now(), id) {
		return daemon.Outcome{}, false
	}
	start := time.Now()
	a.Status("checking " + a.Cfg.Server.URL)
	ans, err := a.Proto.Ask(ctx, q.Query, q.INM)
	if err != nil {
		return daemon.Outcome{}, false
	}
	ans.Resp.Body.Close() // a 304 has none; anything else goes to the full check
	if id, err := a.stateIdent(); err != nil || !q.Fits(a.Clock.Now(), id) || ans.Status != http.StatusNotModified {
		return daemon.Outcome{}, false
	}
	if ok, err := a.checkLog(nil).Answered(q, a.Clock.Now(), time.Since(start), a.Clock.Floor()); !ok || err != nil {
		return daemon.Outcome{}, false
	}
	a.quiet = q
	a.Log.Info("check", "result", ResultUpToDate, "slot", q.Slot, "bytes", 0, "duration", time.Since(start).Round(time.Millisecond).String())
	return daemon.Outcome{Key: q.Key}, true
}

func (a *Agent) stateIdent() (checklog.Ident, error) {
	root, _ := a.Slots.Root()
	return checklog.StateIdent(root, dbName)
}
