package agent

import (
	"time"

	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/internal/update"
	"github.com/ota-agent/ota-agent/store"
)

// Report is what `status` shows and `status --json` prints: the agent's public account of
// a state directory (not the database's records). Durations are in seconds.
type Report struct {
	Slot       string               `json:"slot"`
	Generation int64                `json:"generation"`
	Status     string               `json:"status"` // committed | trial | "" (nothing installed)
	Trials     int                  `json:"trials,omitempty"`
	Since      *time.Time           `json:"since,omitempty"`
	Previous   *SlotRef             `json:"previous,omitempty"`
	Apps       map[string]AppReport `json:"apps"`
	LastCheck  *CheckReport         `json:"last_check,omitempty"`
	LastVerify *VerifyReport        `json:"last_verify,omitempty"`
	Damaged    map[string]string    `json:"damaged,omitempty"`
	Refused    map[string]Refusal   `json:"refused,omitempty"`  // by MD5
	Deferred   map[string]Deferral  `json:"deferred,omitempty"` // by MD5: phased rollouts' turns not come
	OS         *update.OSStatus     `json:"os,omitempty"`
	// InProgress is the update machine's state while an update runs (or where one was
	// interrupted, until the next check recovers from it).
	InProgress string `json:"in_progress,omitempty"`
	// Staged is a generation sealed in the inactive slot, waiting for an install window.
	Staged *SlotRef `json:"staged,omitempty"`
	// Trust is whom statements are checked against, and freeze detection (trust.go).
	Trust *TrustReport `json:"trust,omitempty"`
	// RebuiltFromManifests says why the database could not be read (the report comes from
	// the slot manifests instead).
	RebuiltFromManifests string `json:"rebuilt_from_manifests,omitempty"`
}

// TrustReport is the key set held and the newest timestamp.
type TrustReport = trust.Report

// SlotRef names a generation in a slot.
type SlotRef struct {
	Slot       string `json:"slot"`
	Generation int64  `json:"generation"`
}

// AppReport is one installed binary.
type AppReport struct {
	Version string `json:"version"`
	MD5     string `json:"md5"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Serial  int64  `json:"serial,omitempty"`
	Signed  bool   `json:"signed"`
}

// CheckReport is the last check.
type CheckReport struct {
	Time    time.Time `json:"time"`
	Result  string    `json:"result"`
	Error   string    `json:"error,omitempty"`
	Seconds float64   `json:"duration_s"`
	Bytes   int64     `json:"bytes"`
	// Via is how each app of the update arrived: patch, full or payload, bytes vs size.
	Via map[string]Delivery `json:"via,omitempty"`
	// Removed: apps the check removed; Unlisted: apps its answer left out, kept.
	Removed  []string `json:"removed,omitempty"`
	Unlisted []string `json:"unlisted,omitempty"`
}

// VerifyReport is the daemon's last re-verification of the active slot.
type VerifyReport struct {
	Time       time.Time `json:"time"`
	Slot       string    `json:"slot"`
	Generation int64     `json:"generation"`
	Seconds    float64   `json:"duration_s"`
	Problems   []string  `json:"problems,omitempty"`
	Repaired   []string  `json:"repaired,omitempty"`
}

// Report reads the state directory's account from db (opened with OpenDBReadOnly).
func (a *Agent) Report(db *store.DB) (*Report, error) {
	rep := &Report{Apps: map[string]AppReport{}}
	s, err := db.State()
	if err != nil {
		return nil, err
	}
	if s != nil {
		since := s.Since
		rep.Slot, rep.Generation, rep.Status, rep.Since, rep.Damaged = s.Slot, s.N, s.Status, &since, s.Damaged
		if s.Previous != nil {
			rep.Previous = &SlotRef{Slot: s.Previous.Slot, Generation: s.Previous.N}
		}
		for app, x := range s.Apps {
			rep.Apps[app] = AppReport{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Size: x.Size, Serial: x.Serial, Signed: x.Signed}
		}
	}
	if db.Rebuilt {
		rep.RebuiltFromManifests = db.Damage
	}
	if c, err := a.checkLog(db).Last(); err != nil {
		return nil, err
	} else if c != nil {
		rep.LastCheck = &CheckReport{Time: c.Time, Result: c.Result, Error: c.Error, Seconds: c.Duration.Seconds(), Bytes: c.Bytes, Via: c.Via, Removed: c.Removed, Unlisted: c.Unlisted}
	}
	if v, err := db.LastVerify(); err != nil {
		return nil, err
	} else if v != nil {
		rep.LastVerify = &VerifyReport{Time: v.Time, Slot: v.Slot, Generation: v.N, Seconds: v.Duration.Seconds(), Problems: v.Problems, Repaired: v.Repaired}
	}
	if rep.Refused, err = db.Refusals(); err != nil {
		return nil, err
	}
	rep.Deferred, _ = db.Deferred()
	rep.OS = a.OSStatus(db)
	if g, err := db.Staged(); err == nil && g != nil {
		rep.Staged = &SlotRef{Slot: g.Slot, Generation: g.N}
	}
	if rec, err := db.Journal(); err == nil && rec != nil {
		rep.InProgress, rep.Trials = rec.Step, rec.Trials
	}
	rep.Trust = a.Trust.Report(db, a.Clock.Now())
	return rep, nil
}
