package update

import (
	"errors"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/store"
)

type (
	// Result is what `check --once --json` prints; AppResult one app of it (internal/result).
	Result    = result.Result
	AppResult = result.AppResult
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

// Results of a check (internal/result).
const (
	ResultUpToDate  = result.UpToDateResult
	ResultUpdated   = result.Updated
	ResultFailed    = result.FailedResult
	ResultStaged    = result.Staged
	ResultAvailable = result.Available
)

// Failed is the result of a check that failed with err; UpToDate of one that changed
// nothing, on state.
func Failed(err error) *Result            { return result.Failed(err) }
func UpToDate(state *store.State) *Result { return result.UpToDate(state) }

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

func orNothing(s string) string {
	if s == "" {
		return "none (first install)"
	}
	return s
}
