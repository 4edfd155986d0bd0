// Package update is the update state machine: one journal record, written before each step,
// is the resume point (machine.go, recover.go); the steps install a generation into the
// inactive slot, switch to it, judge it and commit or roll it back, and write an OS image to
// its partition. The active slot is never touched before the switch.
package update

import (
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/health"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/store"
)

// Engine is what the machine works with: the configuration, the state directory's slots
// and the rooms it drives. agent.New builds one; each run of the machine is a job over it.
type Engine struct {
	Cfg    *config.Config
	Log    *slog.Logger
	HTTP   *http.Client
	Keys   []ed25519.PublicKey // trust.keys
	Slots  installer.Slots
	Proto  *protocol.Client // asks the endpoint
	Trust  *trust.Verifier  // decides what may be installed
	Health health.Checker   // judges a generation on trial
	Clock  *trust.Clock     // the device's time, never below the floor
	// Status receives one-line progress a person can read (systemd STATUS=).
	Status func(string)
	// Now is the device's clock (the time floor is applied on top: Clock).
	Now func() time.Time
	// Hook lets crash tests stop the machine after a named step (test builds only).
	Hook func(step string)
}

func (a *Engine) step(name string) {
	if a.Hook != nil {
		a.Hook(name)
	}
}

// now is the agent's idea of the time: never earlier than the time floor.
func (a *Engine) now(*store.DB) time.Time { return a.Clock.Now() }
