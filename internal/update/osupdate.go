package update

import (
	"context"
	"fmt"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/osimage"
	"github.com/ota-agent/ota-agent/store"
)

// The OS image's steps (internal/osimage does the partitions' work): written to the
// partition not booted, the bootloader told to try it once, the reboot; after it, the new
// system's health decides.

// OS is the OS image's A/B partitions; nil with the default directory backend.
func (a *Engine) OS() *osimage.Slots { return osimage.New(a.Cfg, a.Log) }

// Partitions are the OS image's partitions (nil: none).
func (a *Engine) Partitions() *installer.Partitions {
	if s := a.OS(); s != nil {
		return s.Parts
	}
	return nil
}

// OSApp is the app that is the OS image, when it lives on partitions.
func (a *Engine) OSApp() string {
	if s := a.OS(); s != nil {
		return s.App
	}
	return ""
}

// writeOS: the verified image, streamed into the partition that is not booted as it arrived
// (delivery), is read back from the medium; nothing points at it yet.
func (j *job) writeOS(context.Context) (State, error) {
	if j.OSWritten == nil {
		return "", fmt.Errorf("%s %s was verified but not written to an OS slot", j.OSItem.App, j.OSItem.Version)
	}
	var err error
	j.os, err = j.a.OS().Written(j.db, j.OSRec, *j.OSWritten)
	return SetEnv, err
}

// setEnv journals the written image, then asks the bootloader to try it once (one atomic
// environment write, fsync'd).
func (j *job) setEnv(context.Context) (State, error) {
	if err := j.a.OS().SetTry(j.db, j.os); err != nil {
		return "", err
	}
	j.res.OSSlot = j.os.Try
	return Reboot, j.db.SetProgress(j.OSItem.Member(), nil) // its resume record: done
}

// reboot: the OS image waits for its reboot (run now when slots.os.reboot says how); the
// directory slots follow.
func (j *job) reboot(ctx context.Context) (State, error) {
	if cmd := j.a.Cfg.Slots.OS.Reboot; cmd != "" {
		if err := j.a.runHook(ctx, "slots.os.reboot", cmd, []string{"OTA_OS_SLOT=" + j.os.Try}); err != nil {
			return "", err
		}
	} else {
		j.a.Status(fmt.Sprintf("reboot to try OS slot %s", j.os.Try))
	}
	return Seal, nil
}

// settleOSEnv settles an OS image whose environment write a crash interrupted.
func (a *Engine) settleOSEnv(db *store.DB) error {
	if s := a.OS(); s != nil {
		return s.Settle(db)
	}
	return nil
}

// rebootedOS is the OS record and the slot booted when an image set to try has seen a
// reboot since (nil: none, or not rebooted yet).
func (a *Engine) rebootedOS(db *store.DB) (*store.OSState, string, error) {
	if s := a.OS(); s != nil {
		return s.Rebooted(db)
	}
	return nil, "", nil
}

// awaitingReboot: an OS image set to try and booted since runs its trial (the machine from
// OSTrial). Not rebooted yet: it waits.
func (a *Engine) awaitingReboot(ctx context.Context, db *store.DB) error {
	o, booted, err := a.rebootedOS(db)
	if err != nil || o == nil || booted != o.Try {
		return err
	}
	j, err := a.newJob(db, nil, store.Journal{})
	if err != nil {
		return err
	}
	return j.run(ctx, OSTrial)
}

// fellBack: an OS image set to try, but the device booted the old slot since: the
// bootloader fell back, and the image is refused.
func (a *Engine) fellBack(db *store.DB) error {
	o, booted, err := a.rebootedOS(db)
	if err != nil || o == nil || booted == o.Try {
		return err
	}
	reason := fmt.Sprintf("the bootloader fell back to slot %s instead of booting slot %s", booted, o.Try)
	a.Log.Warn("OS update failed", "app", o.App, "version", o.Release.Version, "reason", reason)
	if err := a.refuseApps(db, map[string]store.App{o.App: o.Release}, nil, reason); err != nil {
		return err
	}
	return a.OS().Abandon(db, o)
}

// osTrial is the new OS image's health check, after its boot: failure sends the next boot
// back to the committed slot and refuses the image.
func (j *job) osTrial(ctx context.Context) (State, error) {
	a, db := j.a, j.db
	o, err := db.OS()
	if err != nil || o == nil || o.Try == "" {
		return Idle, err
	}
	s, err := db.State()
	if err != nil {
		return "", err
	}
	var apps map[string]store.App
	if s != nil {
		apps = s.Apps // the apps' units run on the new OS too
	}
	err = a.Health.Judge(ctx, apps, []string{"OTA_OS_SLOT=" + o.Try})
	if err == nil {
		return OSCommit, nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	reason := "health check failed on the new OS: " + err.Error()
	if err := a.refuseApps(db, map[string]store.App{o.App: o.Release}, nil, reason); err != nil {
		return "", err
	}
	if err := a.OS().Abandon(db, o); err != nil {
		return "", err
	}
	a.Log.Error("new OS failed its health check; the next boot returns to the committed slot", "slot", o.Committed)
	if cmd := a.Cfg.Slots.OS.Reboot; cmd != "" {
		return Idle, a.runHook(ctx, "slots.os.reboot", cmd, []string{"OTA_OS_SLOT=" + o.Committed})
	}
	return "", fmt.Errorf("%w: %s; reboot to return to OS slot %s", fault.ErrRejected, reason, o.Committed)
}

// osCommit marks the new OS image good in the environment and the record.
func (j *job) osCommit(context.Context) (State, error) {
	o, err := j.db.OS()
	if err != nil || o == nil || o.Try == "" {
		return Idle, err
	}
	return Idle, j.a.OS().Commit(j.db, o)
}

// MarkGood commits the OS slot the device booted into after an update (`ota-agent mark-good`).
func (a *Engine) MarkGood(db *store.DB) error {
	s := a.OS()
	if s == nil {
		return fmt.Errorf("%w: mark-good needs slots.os.backend: partition", fault.ErrConfig)
	}
	return s.MarkGood(db)
}

// OSStatus is what `status` shows of the partitions.
type OSStatus = osimage.Status

// OSStatus reads the bootloader environment and the record (nil: no partitions).
func (a *Engine) OSStatus(db *store.DB) *OSStatus {
	if s := a.OS(); s != nil {
		return s.Status(db)
	}
	return nil
}

// VerifyOS re-reads the committed OS partition against the record (`ota-agent verify`).
func (a *Engine) VerifyOS(db *store.DB) (string, error) {
	if s := a.OS(); s != nil {
		return s.Verify(db)
	}
	return "", nil
}
