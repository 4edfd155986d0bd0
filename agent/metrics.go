package agent

import (
	"github.com/ota-agent/ota-agent/internal/metrics"
	"github.com/ota-agent/ota-agent/store"
)

// writeMetrics writes metrics.textfile (internal/metrics) from the database's account.
func (a *Agent) writeMetrics(db *store.DB) error {
	if a.Cfg.Metrics.Textfile == "" {
		return nil
	}
	var s metrics.Snapshot
	var err error
	if s.LastCheck, err = a.checkLog(db).Last(); err != nil {
		return err
	}
	if s.State, err = db.State(); err != nil {
		return err
	}
	if rec, err := db.Journal(); err == nil && rec != nil {
		s.InProgress = rec.Step
	}
	if refused, err := db.Refusals(); err == nil {
		s.Refused = len(refused)
	}
	if o := a.OSStatus(db); o != nil {
		trying := o.Try != ""
		s.OSTrying = &trying
	}
	if t := a.Trust.Report(db, a.Clock.Now()); t != nil {
		s.KeySet = &t.KeySetVersion
		if a.Cfg.Trust.MaxStaleness > 0 {
			s.Stale = &t.Stale
		}
	}
	if s.Counters, err = a.checkLog(db).Counters(); err != nil {
		return err
	}
	return metrics.Write(a.Cfg.Path(a.Cfg.Metrics.Textfile), s)
}
