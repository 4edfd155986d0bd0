// Package osimage is the OS image (the catalog's os_<arch>) on A/B partitions: written to
// the partition that is not booted and read back, then one atomic bootloader-environment
// write asks to try it once. After the reboot the new system confirms itself (its health
// checks, mark-good) or the bootloader falls back (docs/bootloader.md). The OS record in
// bbolt (store.OSState) says which slot is committed and which image is set to try.
package osimage

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Slots are the OS image's two partitions and their bootloader environment.
type Slots struct {
	Parts      *installer.Partitions
	App        string // os_<arch>
	bootIDFile string
	log        *slog.Logger
}

// New is the OS image's slots of cfg; nil with the default directory backend (the OS image
// is then an app like the others).
func New(cfg *config.Config, log *slog.Logger) *Slots {
	o := cfg.Slots.OS
	if o.Backend != "partition" {
		return nil
	}
	p := &installer.Partitions{Devices: map[string]string{}}
	for s, d := range o.Devices {
		p.Devices[s] = cfg.Path(d)
	}
	if o.Bootloader == "grub" {
		p.Env = installer.GrubEnv{File: cfg.Path(o.Grubenv)}
	} else {
		p.Env = installer.UBootEnv{Config: cfg.Path(o.FwEnvConfig)}
	}
	s := &Slots{Parts: p, bootIDFile: cfg.Path(o.BootIDFile), log: log}
	if arch, err := cfg.CPUArch(); err == nil {
		s.App = "os_" + arch
	}
	return s
}

// BootID is this boot's id: a different one than when an image was set to try means the
// device rebooted since.
func (s *Slots) BootID() string {
	raw, err := os.ReadFile(s.bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

// Installed is what the partitions hold, as installed apps: the committed image; and the
// MD5 of one set to try (so the server does not send it again while the device waits for a
// reboot).
func Installed(db *store.DB) (map[string]store.App, []string, error) {
	o, err := db.OS()
	if err != nil || o == nil {
		return nil, nil, err
	}
	apps := map[string]store.App{}
	var trying []string
	if o.Current.MD5 != "" {
		apps[o.App] = o.Current
	}
	if o.Try != "" && o.Release.MD5 != "" {
		trying = append(trying, o.Release.MD5)
	}
	return apps, trying, nil
}

// Target is the partition the next image is streamed into, the one not booted, and the
// booted one. An image still waiting for its reboot there is forgotten first, the
// bootloader told to stay on the booted slot (one environment write), so no byte is written
// to a slot the bootloader may try.
func (s *Slots) Target(db *store.DB) (target, booted string, err error) {
	p := s.Parts
	env, err := p.Env.Read()
	if err != nil {
		return "", "", err
	}
	booted = p.Booted(env)
	o, err := db.OS()
	if err != nil {
		return "", "", err
	}
	if o != nil && o.Try != "" {
		// A newer image replaces one still waiting for its reboot.
		if err := p.Env.Write(map[string]string{installer.VarSlot: booted, installer.VarUpgrade: "0", installer.VarBootcount: "0"}); err != nil {
			return "", "", err
		}
		o.Try, o.Release, o.EnvSet = "", store.App{}, false
		if err := db.SetOS(o); err != nil {
			return "", "", err
		}
	}
	return installer.Other(booted), booted, nil
}

// Written checks that the image streamed into w.Slot (written, flushed, read back from the
// medium: Sink.Finish) is rel, the verified release, and returns the OS record to journal
// with it (SetTry); nothing points at the slot yet.
func (s *Slots) Written(db *store.DB, rel store.App, w installer.Written) (*store.OSState, error) {
	p := s.Parts
	env, err := p.Env.Read()
	if err != nil {
		return nil, err
	}
	booted := p.Booted(env)
	if w.Slot == booted || w.Size != rel.Size {
		return nil, fmt.Errorf("OS slot %s: the image was written to it as %d bytes, but the booted slot is %s and the release has %d bytes", w.Slot, w.Size, booted, rel.Size)
	}
	o, err := db.OS()
	if err != nil {
		return nil, err
	}
	if o == nil {
		o = &store.OSState{App: s.App, Committed: booted}
	}
	if w.Sum.SHA256 != rel.SHA256 || w.Sum.Size != rel.Size {
		return nil, fmt.Errorf("OS slot %s holds an image of %d bytes with SHA-256 %s, not the release's (%d bytes, %s)", w.Slot, w.Sum.Size, w.Sum.SHA256, rel.Size, rel.SHA256)
	}
	o.Try, o.Release, o.BootID, o.EnvSet = w.Slot, rel, s.BootID(), false
	return o, nil
}

// SetTry journals the written image o, then asks the bootloader to try it once (one atomic
// environment write, fsync'd), then records that it asked.
func (s *Slots) SetTry(db *store.DB, o *store.OSState) error {
	if err := db.SetOS(o); err != nil {
		return err
	}
	if err := s.Parts.SetTry(o.Try); err != nil {
		return fmt.Errorf("%s: %w", s.Parts.Env, err)
	}
	o.EnvSet = true
	if err := db.SetOS(o); err != nil {
		return err
	}
	s.log.Info("OS image written; the bootloader will try it at the next boot", "app", o.App, "version", o.Release.Version, "slot", o.Try, "bytes", o.Release.Size)
	return nil
}

// Settle settles an image whose environment write a crash interrupted: it landed (the image
// waits for its reboot) or it did not (the image is forgotten).
func (s *Slots) Settle(db *store.DB) error {
	o, err := db.OS()
	if err != nil || o == nil || o.Try == "" || o.EnvSet {
		return err
	}
	env, err := s.Parts.Env.Read()
	if err != nil {
		return err
	}
	if env[installer.VarSlot] == o.Try && env[installer.VarUpgrade] == "1" {
		o.EnvSet = true // the environment write landed before the crash
		return db.SetOS(o)
	}
	s.log.Info("discarding an OS install interrupted before the bootloader was told", "slot", o.Try)
	o.Try, o.Release = "", store.App{}
	return db.SetOS(o)
}

// Rebooted is the OS record and the slot booted when an image set to try has seen a reboot
// since (nil: none, or not rebooted yet).
func (s *Slots) Rebooted(db *store.DB) (*store.OSState, string, error) {
	if err := s.Settle(db); err != nil {
		return nil, "", err
	}
	o, err := db.OS()
	if err != nil || o == nil || o.Try == "" || !o.EnvSet || s.BootID() == o.BootID {
		return nil, "", err
	}
	env, err := s.Parts.Env.Read()
	if err != nil {
		return nil, "", err
	}
	return o, s.Parts.Booted(env), nil
}

// Abandon forgets the image set to try, the next boots going to committed: after the
// bootloader fell back to it, or a failed health check on the new system.
func (s *Slots) Abandon(db *store.DB, o *store.OSState) error {
	if err := s.Parts.Env.Write(map[string]string{installer.VarSlot: o.Committed, installer.VarUpgrade: "0", installer.VarBootcount: "0"}); err != nil {
		return err
	}
	o.Try, o.Release, o.EnvSet = "", store.App{}, false
	return db.SetOS(o)
}

// MarkGood commits the OS slot the device booted into after an update (`ota-agent mark-good`).
func (s *Slots) MarkGood(db *store.DB) error {
	o, err := db.OS()
	if err != nil {
		return err
	}
	if o == nil || o.Try == "" || !o.EnvSet {
		return fmt.Errorf("no OS update is waiting to be marked good")
	}
	if s.BootID() == o.BootID {
		return fmt.Errorf("the device has not rebooted since OS slot %s was set to try: reboot first", o.Try)
	}
	env, err := s.Parts.Env.Read()
	if err != nil {
		return err
	}
	if b := s.Parts.Booted(env); b != o.Try {
		return fmt.Errorf("booted OS slot %s, not the updated slot %s: the bootloader fell back", b, o.Try)
	}
	return s.Commit(db, o)
}

// Commit marks the image set to try good in the environment and the record.
func (s *Slots) Commit(db *store.DB, o *store.OSState) error {
	if err := s.Parts.MarkGood(); err != nil {
		return err
	}
	o.Committed, o.Current = o.Try, o.Release
	o.Try, o.Release, o.EnvSet, o.BootID = "", store.App{}, false, ""
	if err := db.SetOS(o); err != nil {
		return err
	}
	s.log.Info("OS committed", "app", o.App, "version", o.Current.Version, "slot", o.Committed)
	return nil
}

// Status is what `status` shows of the partitions.
type Status struct {
	Booted    string            `json:"booted"`
	Try       string            `json:"try,omitempty"`
	Committed string            `json:"committed"`
	Env       map[string]string `json:"env"`
	State     *store.OSState    `json:"state,omitempty"`
	Error     string            `json:"error,omitempty"`
}

// Status reads the bootloader environment and the record.
func (s *Slots) Status(db *store.DB) *Status {
	p := s.Parts
	st := &Status{}
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

// Verify re-reads the committed OS partition against the record (`ota-agent verify`).
func (s *Slots) Verify(db *store.DB) (string, error) {
	o, err := db.OS()
	if err != nil || o == nil || o.Current.MD5 == "" {
		return "", err
	}
	dev := s.Parts.Devices[o.Committed]
	if where, rw := s.Parts.MountedRW(o.Committed); rw {
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
