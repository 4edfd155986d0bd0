package update

import (
	"errors"
	"time"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/store"
)

type (
	// Plan is what a check would do; PlanItem one binary of it (protocol).
	Plan     = protocol.Plan
	PlanItem = protocol.PlanItem
	// Delivery is how an app arrived and what it cost.
	Delivery = store.Delivery
	// Refusal is a release the device will not install again until the server offers another.
	Refusal = store.Refusal
)

// How an app arrived.
const (
	DeliveryPatch   = protocol.DeliveryPatch
	DeliveryChunks  = protocol.DeliveryChunks
	DeliveryFull    = protocol.DeliveryFull
	DeliveryPayload = protocol.DeliveryPayload
)

// Error classes of a run (the CLI maps them to exit codes).
var (
	ErrRejected    = fault.ErrRejected
	ErrUnavailable = fault.ErrUnavailable
	ErrConfig      = fault.ErrConfig
	// ErrRolledBack: the new generation failed its health check and was rolled back; the
	// release is refused (exit 1: the device runs what it ran before).
	ErrRolledBack = errors.New("the new generation was rolled back")
	// ErrInterrupted: a signal stopped the check (exit 1); nothing half-made is active.
	ErrInterrupted = errors.New("interrupted")
)

// Results of a check.
const (
	ResultUpToDate = "up-to-date"
	ResultUpdated  = "updated"
	ResultFailed   = "failed"
	// ResultStaged: installed into the inactive slot, waiting for an install window.
	ResultStaged = "staged"
	// ResultAvailable: a --dry-run found something to install (nothing was changed).
	ResultAvailable = "update-available"
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
}

// Failed is the result of a check that failed with err.
func Failed(err error) *Result {
	return &Result{Result: ResultFailed, Error: err.Error(), Apps: map[string]AppResult{}}
}

// UpToDate is the result of a check that changed nothing, on state.
func UpToDate(state *store.State) *Result {
	res := &Result{Result: ResultUpToDate, Apps: map[string]AppResult{}}
	if state != nil {
		res.Slot = state.Slot
		for app, x := range state.Apps {
			res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		}
	}
	return res
}

func orNothing(s string) string {
	if s == "" {
		return "none (first install)"
	}
	return s
}
