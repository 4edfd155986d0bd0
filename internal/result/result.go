// Package result is what a check says it did: the JSON `check --once --json` prints and the
// text a person reads are made from it.
package result

import (
	"time"

	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/store"
)

type (
	// Delivery is how an app arrived and what it cost.
	Delivery = store.Delivery
	// Plan is what a dry run would do.
	Plan = protocol.Plan
	// Refusal is a release the device will not install again until the server offers another.
	Refusal = store.Refusal
)

// Results of a check.
const (
	UpToDateResult = "up-to-date"
	Updated        = "updated"
	FailedResult   = "failed"
	// Staged: installed into the inactive slot, waiting for an install window.
	Staged = "staged"
	// Available: a --dry-run found something to install (nothing was changed).
	Available = "update-available"
)

// AppResult is one app of a check's answer.
type AppResult struct {
	Version string `json:"version"`
	MD5     string `json:"md5"`
	SHA256  string `json:"sha256"`
	Serial  int64  `json:"serial"`
	Changed bool   `json:"changed"`
	Delivery
}

// Result is what `check --once --json` prints.
type Result struct {
	Result string               `json:"result"`
	Slot   string               `json:"slot,omitempty"`
	Apps   map[string]AppResult `json:"apps"`
	Error  string               `json:"error,omitempty"`
	Plan   *Plan                `json:"plan,omitempty"`
	Bytes  int64                `json:"bytes"`
	// Note says how an up-to-date result came about when the server did not answer 304.
	Note string `json:"note,omitempty"`
	// Switched: the apps' new slot is active (`current` names it).
	Switched bool `json:"switched,omitempty"`
	// OSSlot is the partition an OS image was written to, to try at the next boot.
	OSSlot string `json:"os_slot,omitempty"`
	// StagedUntil is when a staged generation switches (the next install window opens).
	StagedUntil *time.Time `json:"staged_until,omitempty"`
	// Removed are the apps the update removed (the answer no longer names them).
	Removed []string `json:"removed,omitempty"`
	// Unlisted are apps the answer left out that were kept (trust.allow_unsigned_removals).
	Unlisted []string `json:"unlisted,omitempty"`
	// Refused are the releases this device refuses, by MD5 (ota-agent retry APP).
	Refused map[string]Refusal `json:"refused,omitempty"`
	// Deferred are the releases phased rollouts keep from this device for now, by app.
	Deferred []store.Deferral `json:"deferred,omitempty"`
	// Offered are the releases a failed check was installing (app → version).
	Offered map[string]string `json:"offered,omitempty"`
}

// Failed is the result of a check that failed with err.
func Failed(err error) *Result {
	return &Result{Result: FailedResult, Error: err.Error(), Apps: map[string]AppResult{}}
}

// FailedAfter is the result of a check that failed with err after prev (nil: none) had got
// that far: what it received and what it was installing still count.
func FailedAfter(err error, prev *Result) *Result {
	res := Failed(err)
	if prev != nil {
		res.Bytes, res.Offered = prev.Bytes, prev.Offered
	}
	return res
}

// UpToDate is the result of a check that changed nothing, on state.
func UpToDate(state *store.State) *Result {
	res := &Result{Result: UpToDateResult, Apps: map[string]AppResult{}}
	if state != nil {
		res.Slot = state.Slot
		for app, x := range state.Apps {
			res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		}
	}
	return res
}
