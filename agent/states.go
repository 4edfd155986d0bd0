package agent

import "github.com/ota-agent/ota-agent/internal/update"

// The update machine's states (internal/update), for the crash tests and status.
const (
	Ask          = update.Ask
	Receive      = update.Receive
	Verify       = update.Verify
	Compose      = update.Compose
	WriteOS      = update.WriteOS
	SetEnv       = update.SetEnv
	Reboot       = update.Reboot
	Seal         = update.Seal
	Park         = update.Park
	AwaitWindow  = update.AwaitWindow
	Switch       = update.Switch
	Record       = update.Record
	RestartUnits = update.RestartUnits
	Trial        = update.Trial
	Commit       = update.Commit
	RollBack     = update.RollBack
	OSTrial      = update.OSTrial
	OSCommit     = update.OSCommit
	Idle         = update.Idle
)

// States lists the machine's states (Idle last).
func States() []State { return update.States() }
