package update

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// The OS image (the catalog's os_<arch>) on A/B partitions: written to the partition that
// is not booted, read back, then one atomic bootloader-environment write asks to try it once.
// After the reboot the new system confirms itself (health hook, mark-good) or the bootloader
// falls back and the release is refused (docs/bootloader.md).

// Partitions is nil with the default directory backend.
func (a *Engine) Partitions() *installer.Partitions {
	o := a.Cfg.Slots.OS
	if o.Backend != "partition" {
		return nil
	}
	p := &installer.Partitions{Devices: map[string]string{}}
	for s, d := range o.Devices {
		p.Devices[s] = a.Cfg.Path(d)
	}
	if o.Bootloader == "grub" {
		p.Env = installer.GrubEnv{File: a.Cfg.Path(o.Grubenv)}
	} else {
		p.Env = installer.UBootEnv{Config: a.Cfg.Path(o.FwEnvConfig)}
	}
	return p
}

// OSApp is the app that is the OS image, when it lives on partitions.
func (a *Engine) OSApp() string {
	if a.Partitions() == nil {
		return ""
	}
	arch, err := a.Cfg.CPUArch()
	if err != nil {
		return ""
	}
	return "os_" + arch
}

func (a *Engine) bootID() string {
	raw, err := os.ReadFile(a.Cfg.Path(a.Cfg.Slots.OS.BootIDFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

// osInstalled is what the partitions hold, as installed apps: the committed image and the
// one on trial (so the server does not send it again while the device waits for a reboot).
func (a *Engine) osInstalled(db *store.DB) (map[string]store.App, []string, error) {
	o, err := db.OS()
	if err != nil || o == nil {
		return nil, nil, err
	}
	apps := map[string]store.App{}
	var extra []string
	if o.Current.MD5 != "" {
		apps[o.App] = o.Current
	}
	if o.Try != "" && o.Release.MD5 != "" {
		extra = append(extra, o.Release.MD5)
	}
	return apps, extra, nil
}

// writeOS puts the verified image (staged as a file) on the partition that is not booted,
// fsync'd and read back; nothing points at it yet.
func (j *job) writeOS(context.Context) (State, error) { return SetEnv, j.writeImage() }

func (j *job) writeImage() error {
	a, db, p := j.a, j.db, j.parts
	env, err := p.Env.Read()
	if err != nil {
		return err
	}
	booted := p.Booted(env)
	target := installer.Other(booted)
	o, err := db.OS()
	if err != nil {
		return err
	}
	if o == nil {
		o = &store.OSState{App: j.osApp, Committed: booted}
	}
	if o.Try != "" {
		// A newer image replaces one still waiting for its reboot: first stop the bootloader
		// from trying the slot we are about to overwrite.
		if err := p.Env.Write(map[string]string{installer.VarSlot: booted, installer.VarUpgrade: "0", installer.VarBootcount: "0"}); err != nil {
			return err
		}
		o.Try, o.Release, o.EnvSet = "", store.App{}, false
		if err := db.SetOS(o); err != nil {
			return err
		}
	}
	staged := delivery.Incoming(j.osItem.Member())
	f, err := j.st.Open(staged)
	if err != nil {
		return err
	}
	defer f.Close()
	a.Status(fmt.Sprintf("writing %s %s to OS slot %s", j.osApp, j.osRec.Version, target))
	if err := p.Write(target, booted, f, j.osRec.Size); err != nil {
		return fmt.Errorf("OS slot %s: %w", target, err)
	}
	o.Try, o.Release, o.BootID, o.EnvSet = target, j.osRec, a.bootID(), false
	j.os = o
	return nil
}

// setEnv journals the written image, then asks the bootloader to try it once (one atomic
// environment write, fsync'd).
func (j *job) setEnv(context.Context) (State, error) {
	a, o := j.a, j.os
	if err := j.db.SetOS(o); err != nil {
		return "", err
	}
	if err := j.parts.SetTry(o.Try); err != nil {
		return "", fmt.Errorf("%s: %w", j.parts.Env, err)
	}
	o.EnvSet = true
	if err := j.db.SetOS(o); err != nil {
		return "", err
	}
	j.res.OSSlot = o.Try
	a.Log.Info("OS image written; the bootloader will try it at the next boot", "app", o.App, "version", o.Release.Version, "slot", o.Try, "bytes", o.Release.Size)
	return Reboot, j.st.Remove(delivery.Incoming(j.osItem.Member()))
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

// settleOSEnv settles an OS image whose environment write a crash interrupted: it landed
// (the image waits for its reboot) or it did not (the image is forgotten).
func (a *Engine) settleOSEnv(db *store.DB) error {
	p := a.Partitions()
	if p == nil {
		return nil
	}
	o, err := db.OS()
	if err != nil || o == nil || o.Try == "" || o.EnvSet {
		return err
	}
	env, err := p.Env.Read()
	if err != nil {
		return err
	}
	if env[installer.VarSlot] == o.Try && env[installer.VarUpgrade] == "1" {
		o.EnvSet = true // the environment write landed before the crash
		return db.SetOS(o)
	}
	a.Log.Info("discarding an OS install interrupted before the bootloader was told", "slot", o.Try)
	o.Try, o.Release = "", store.App{}
	return db.SetOS(o)
}

// rebootedOS is the OS record and the slot booted when an image set to try has seen a
// reboot since (nil: none, or not rebooted yet).
func (a *Engine) rebootedOS(db *store.DB) (*store.OSState, string, error) {
	p := a.Partitions()
	if p == nil {
		return nil, "", nil
	}
	if err := a.settleOSEnv(db); err != nil {
		return nil, "", err
	}
	o, err := db.OS()
	if err != nil || o == nil || o.Try == "" || !o.EnvSet || a.bootID() == o.BootID {
		return nil, "", err
	}
	env, err := p.Env.Read()
	if err != nil {
		return nil, "", err
	}
	return o, p.Booted(env), nil
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
	p := a.Partitions()
	reason := fmt.Sprintf("the bootloader fell back to slot %s instead of booting slot %s", booted, o.Try)
	a.Log.Warn("OS update failed", "app", o.App, "version", o.Release.Version, "reason", reason)
	if err := a.refuseApps(db, map[string]store.App{o.App: o.Release}, nil, reason); err != nil {
		return err
	}
	if err := p.MarkGood(); err != nil { // clear upgrade_available on the slot we run
		return err
	}
	o.Try, o.Release, o.EnvSet = "", store.App{}, false
	return db.SetOS(o)
}

// osTrial is the new OS image's health check, after its boot: failure sends the next boot
// back to the committed slot and refuses the image.
func (j *job) osTrial(ctx context.Context) (State, error) {
	a, db, p := j.a, j.db, j.parts
	o, err := db.OS()
	if err != nil || o == nil || o.Try == "" {
		return Idle, err
	}
	j.os = o
	var apps map[string]store.App
	if s, _ := db.State(); s != nil {
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
	if err := p.Env.Write(map[string]string{installer.VarSlot: o.Committed, installer.VarUpgrade: "0", installer.VarBootcount: "0"}); err != nil {
		return "", err
	}
	o.Try, o.Release, o.EnvSet = "", store.App{}, false
	if err := db.SetOS(o); err != nil {
		return "", err
	}
	a.Log.Error("new OS failed its health check; the next boot returns to the committed slot", "slot", o.Committed)
	if cmd := a.Cfg.Slots.OS.Reboot; cmd != "" {
		return Idle, a.runHook(ctx, "slots.os.reboot", cmd, []string{"OTA_OS_SLOT=" + o.Committed})
	}
	return "", fmt.Errorf("%w: %s; reboot to return to OS slot %s", ErrRejected, reason, o.Committed)
}

// osCommit marks the new OS image good in the environment and the record.
func (j *job) osCommit(context.Context) (State, error) {
	o, err := j.db.OS()
	if err != nil || o == nil || o.Try == "" {
		return Idle, err
	}
	return Idle, j.a.markGood(j.db, j.parts, o)
}

// MarkGood commits the OS slot the device booted into after an update (`ota-agent mark-good`).
func (a *Engine) MarkGood(db *store.DB) error {
	p := a.Partitions()
	if p == nil {
		return fmt.Errorf("%w: mark-good needs slots.os.backend: partition", ErrConfig)
	}
	o, err := db.OS()
	if err != nil {
		return err
	}
	if o == nil || o.Try == "" || !o.EnvSet {
		return fmt.Errorf("no OS update is waiting to be marked good")
	}
	if a.bootID() == o.BootID {
		return fmt.Errorf("the device has not rebooted since OS slot %s was set to try: reboot first", o.Try)
	}
	env, err := p.Env.Read()
	if err != nil {
		return err
	}
	if b := p.Booted(env); b != o.Try {
		return fmt.Errorf("booted OS slot %s, not the updated slot %s: the bootloader fell back", b, o.Try)
	}
	return a.markGood(db, p, o)
}

func (a *Engine) markGood(db *store.DB, p *installer.Partitions, o *store.OSState) error {
	if err := p.MarkGood(); err != nil {
		return err
	}
	o.Committed, o.Current = o.Try, o.Release
	o.Try, o.Release, o.EnvSet, o.BootID = "", store.App{}, false, ""
	if err := db.SetOS(o); err != nil {
		return err
	}
	a.Log.Info("OS committed", "app", o.App, "version", o.Current.Version, "slot", o.Committed)
	return nil
}

// OSStatus is what `status` shows of the partitions.
type OSStatus struct {
	Booted    string            `json:"booted"`
	Try       string            `json:"try,omitempty"`
	Committed string            `json:"committed"`
	Env       map[string]string `json:"env"`
	State     *store.OSState    `json:"state,omitempty"`
	Error     string            `json:"error,omitempty"`
}

// OSStatus reads the bootloader environment and the record.
func (a *Engine) OSStatus(db *store.DB) *OSStatus {
	p := a.Partitions()
	if p == nil {
		return nil
	}
	st := &OSStatus{}
	env, err := p.Env.Read()
	if err != nil {
		st.Error = err.Error()
	} else {
		st.Booted = p.Booted(env)
		st.Env = map[string]string{}
		for _, k := range []string{installer.VarSlot, installer.VarUpgrade, installer.VarBootcount, "bootlimit"} {
			if v, ok := env[k]; ok {
				st.Env[k] = v
			}
		}
		if env[installer.VarUpgrade] == "1" {
			st.Try = env[installer.VarSlot]
		}
	}
	st.State, _ = db.OS()
	st.Committed = st.Booted
	if st.State != nil {
		st.Committed = st.State.Committed
	}
	return st
}

// VerifyOS re-reads the committed OS partition against the record (`ota-agent verify`).
func (a *Engine) VerifyOS(db *store.DB) (string, error) {
	p := a.Partitions()
	if p == nil {
		return "", nil
	}
	o, err := db.OS()
	if err != nil || o == nil || o.Current.MD5 == "" {
		return "", err
	}
	dev := p.Devices[o.Committed]
	if where, rw := p.MountedRW(o.Committed); rw {
		// A root mounted read-write rewrites its own superblock, journal and files from the
		// first boot on: its bytes are no longer the image's, and never will be again.
		return fmt.Sprintf("OS slot %s holds %s %s by the record; not re-hashed: %s is mounted read-write on %s (a read-only root is re-hashed)", o.Committed, o.App, o.Current.Version, dev, where), nil
	}
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, err := packaging.DigestReader(io.LimitReader(f, o.Current.Size))
	if err != nil {
		return "", err
	}
	if d.Size != o.Current.Size || d.SHA256 != o.Current.SHA256 || d.MD5 != o.Current.MD5 {
		return "", fmt.Errorf("OS slot %s (%s) differs from %s %s: sha256 %s, want %s", o.Committed, dev, o.App, o.Current.Version, d.SHA256, o.Current.SHA256)
	}
	return fmt.Sprintf("OS slot %s holds %s %s", o.Committed, o.App, o.Current.Version), nil
}
