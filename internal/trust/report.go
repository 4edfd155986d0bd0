package trust

import (
	"time"

	"github.com/ota-agent/ota-agent/store"
)

// Report is the key set held and the newest timestamp (status, device reports).
type Report struct {
	KeySetVersion int64      `json:"key_set_version"` // 0: trust.keys as configured
	Keys          []string   `json:"keys"`            // key ids
	Threshold     int        `json:"threshold"`
	Issued        *time.Time `json:"timestamp_issued,omitempty"`
	Expires       *time.Time `json:"timestamp_expires,omitempty"`
	Stale         bool       `json:"stale"`
	StaleSince    *time.Time `json:"stale_since,omitempty"` // the last time an unexpired timestamp was held
	Error         string     `json:"error,omitempty"`       // why the last timestamp was not fresh
}

// Report says whom statements are checked against at now, and whether the trust is stale
// (nil when no keys are configured).
func (a *Verifier) Report(db *store.DB, now time.Time) *Report {
	if len(a.Keys) == 0 {
		return nil
	}
	set := a.KeySet(db)
	r := &Report{KeySetVersion: set.Version, Keys: set.IDs(), Threshold: set.Threshold}
	t, _ := db.Trust()
	if t == nil {
		return r
	}
	if !t.Issued.IsZero() {
		r.Issued, r.Expires = &t.Issued, &t.Expires
	}
	var since time.Time
	r.Stale, since = a.Stale(t, now)
	if r.Stale {
		r.StaleSince = &since
	}
	r.Error = t.StampError
	return r
}
