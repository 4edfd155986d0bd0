package agent

import (
	"context"

	"github.com/ota-agent/ota-agent/internal/report"
	"github.com/ota-agent/ota-agent/store"
)

// report keeps what this check left in the database as events in the outbox and posts what
// waits there, bounded by the stall timer: it never fails a check nor holds it up.
func (a *Agent) report(ctx context.Context, db *store.DB) {
	if a.Reports == nil {
		return
	}
	var o report.Observed
	a.Reports.Step = a.Hook
	o.Check, _ = a.checkLog(db).Last()
	if t := a.Trust.Report(db, a.Clock.Now()); t != nil && t.Stale {
		o.StaleSince = t.StaleSince
	}
	if g, _ := db.Staged(); g != nil {
		o.StagedUntil = a.Cfg.NextWindow(a.Clock.Now().Local())
	}
	if _, err := a.Reports.Collect(db, o); err != nil {
		a.Log.Warn("device reports: could not record this check's events", "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.Cfg.Server.StallTimeout)
	defer cancel()
	if err := a.Reports.Flush(ctx, db); err != nil {
		a.Log.Warn("device reports: not posted; kept for later", "err", err)
	}
}
