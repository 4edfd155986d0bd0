// Package agent is the update cycle: the device's facts and installed set go out as a
// canonical request, the answer is verified, staged into the inactive slot, switched to
// atomically and recorded. The daemon loop runs the same cycle on a schedule.
package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/health"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Error classes; the CLI maps them to exit codes (README, "Exit codes").
var (
	// ErrUnavailable: the server or the network could not be used; try later (exit 3).
	ErrUnavailable = fault.ErrUnavailable
	// ErrRejected: what the server sent failed verification and was not installed (exit 4).
	ErrRejected = fault.ErrRejected
	// ErrRolledBack: the new generation failed its health check and was rolled back; the
	// release is refused (exit 1: the device runs what it ran before).
	ErrRolledBack = errors.New("the new generation was rolled back")
	// ErrInterrupted: a signal stopped the check (exit 1); nothing half-made is active.
	ErrInterrupted = errors.New("interrupted")
	// ErrBusy: another ota-agent holds the state directory.
	ErrBusy = errors.New("another ota-agent is using the state directory")
)

// Plan is what a check would do (protocol.Plan); PlanItem one binary of it; Facts what the
// device reports (the canonical query).
type (
	Plan     = protocol.Plan
	PlanItem = protocol.PlanItem
	Facts    = protocol.Facts
)

// Delivery is how an app arrived and what it cost.
type Delivery = store.Delivery

// How an app arrived (Result, status).
const (
	DeliveryPatch   = protocol.DeliveryPatch
	DeliveryChunks  = protocol.DeliveryChunks
	DeliveryFull    = protocol.DeliveryFull
	DeliveryPayload = protocol.DeliveryPayload
)

// RetryError carries a server's Retry-After (protocol.RetryError).
type RetryError = protocol.RetryError

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

// Agent runs checks for one configuration.
type Agent struct {
	cfg   *Config
	log   *slog.Logger
	http  *http.Client
	keys  []ed25519.PublicKey
	slots installer.Slots
	// Status receives one-line progress a person can read (systemd STATUS=).
	Status func(string)
	// Now is the agent's clock (the time floor is applied on top).
	Now func() time.Time
	// hook lets crash tests stop the cycle after a named step.
	hook func(step string)
	// health judges a generation on trial (internal/health).
	health health.Checker
	// proto asks the endpoint (internal/protocol).
	proto *protocol.Client
	// trust decides what may be installed (internal/trust).
	trust *trust.Verifier
	clock *trust.Clock
	tidy  bool // the state directory was opened for writing (and tidied)
}

// New checks what the configuration names (trust keys, CA file) and builds the client.
func New(cfg *Config, log *slog.Logger) (*Agent, error) {
	a := &Agent{cfg: cfg, log: log, slots: installer.Slots{Dir: cfg.Path(cfg.StateDir)}, Status: func(string) {}, Now: time.Now}
	a.clock = trust.NewClock(func() time.Time { return a.Now() }, buildFloor())
	a.health = health.Checker{Cfg: cfg, Log: log, Status: func(s string) { a.Status(s) }}
	if err := config.StrictModes(cfg); err != nil {
		return nil, err
	}
	for _, k := range cfg.Trust.Keys {
		raw, err := os.ReadFile(cfg.Path(k))
		if err != nil {
			return nil, fmt.Errorf("%w: trust.keys: %v", ErrConfig, err)
		}
		pub, err := packaging.ParsePublicKeyPEM(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: trust.keys %s: %v", ErrConfig, k, err)
		}
		a.keys = append(a.keys, pub)
	}
	path := func(p string) string {
		if p == "" {
			return ""
		}
		return cfg.Path(p)
	}
	c, err := transport.NewHTTPClient(transport.ClientOptions{
		CAFile: path(cfg.Server.CAFile), Pins: cfg.Server.PinSHA256,
		ClientCert: path(cfg.Server.ClientCert), ClientKey: path(cfg.Server.ClientKey), Proxy: cfg.Server.Proxy,
		HeaderTimeout: cfg.Server.Timeout, StallTimeout: cfg.Server.StallTimeout, Now: a.clock.Now, Learn: a.clock.Raise, RedirectHosts: cfg.Hosts(),
		Limit: limiter(cfg, a.clock.Now), MinRate: int64(cfg.Server.MinRate),
	})
	if err != nil {
		return nil, err
	}
	a.http = c
	a.proto = &protocol.Client{Cfg: cfg, HTTP: c, Log: log}
	a.trust = &trust.Verifier{Keys: a.keys, Cfg: cfg, HTTP: c, Log: log, Clock: a.clock, FirmwareURL: a.proto.FirmwareURL}
	a.testHooks()
	return a, nil
}

// CloseIdleConnections drops kept-alive connections (TLS sessions stay cached).
func (a *Agent) CloseIdleConnections() { a.http.CloseIdleConnections() }

// Config returns the agent's configuration.
func (a *Agent) Config() *Config { return a.cfg }

// Slots returns the slot layout.
func (a *Agent) Slots() installer.Slots { return a.slots }

func (a *Agent) step(name string) {
	if a.hook != nil {
		a.hook(name)
	}
}

func (a *Agent) dbPath() string { return filepath.Join(a.slots.Dir, dbName) }

// dbName is the database's name in the state directory.
const dbName = "agent.db"

// openState opens the state directory once (every later file operation under it goes
// through that os.Root). create makes it and removes anything planted at the agent's own
// names; without it nothing is written and a missing directory is os.ErrNotExist.
func (a *Agent) openState(create bool) error {
	if a.slots.Open() && (a.tidy || !create) {
		return nil
	}
	a.slots.Close()
	l, err := installer.OpenState(a.cfg.Root, a.slots.Dir, create, func(path, was string) {
		a.log.Error("removed what was planted in the state directory", "path", path, "was", was)
	})
	if err != nil {
		return err
	}
	a.slots, a.tidy = l, create
	return nil
}

// limiter is the bandwidth cap of net.max_rate and net.schedule (nil when neither is set).
func limiter(cfg *Config, now func() time.Time) *transport.Limiter {
	rate := cfg.RateFunc(now)
	if rate == nil {
		return nil
	}
	return transport.NewLimiter(rate)
}

// Close releases the state directory.
func (a *Agent) Close() error { return a.slots.Close() }

// OpenDB opens the database for writing (creating the state directory). It only opens:
// recovery from an interrupted run is Recover, which check, run and the commands that
// change something call by name.
func (a *Agent) OpenDB() (*store.DB, error) {
	if err := a.openState(true); err != nil {
		return nil, err
	}
	root, _ := a.slots.Root()
	db, err := store.Open(root, dbName, store.Options{Timeout: 5 * time.Second})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w: %v", ErrBusy, err)
	}
	if err != nil {
		return nil, err
	}
	if db.Rebuilt {
		a.log.Error("database was damaged; moved aside (agent.db.corrupt-*) and rebuilt from the slot manifests", "path", a.dbPath(), "damage", db.Damage)
	}
	if floor, err := db.TimeFloor(); err == nil {
		a.clock.Raise(floor)
	}
	return db, nil
}

// openRecovered is OpenDB then Recover: what every command that writes starts with.
func (a *Agent) openRecovered(ctx context.Context) (*store.DB, error) {
	db, err := a.OpenDB()
	if err != nil {
		return nil, err
	}
	if err := a.Recover(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// ErrNothingInstalled: there is no database and no active slot.
var ErrNothingInstalled = errors.New("nothing installed yet")

func (a *Agent) errNothingYet() error {
	return fmt.Errorf("%w: %s does not exist (run `ota-agent check --once`)", ErrNothingInstalled, a.dbPath())
}

// OpenDBReadOnly opens the database for status, verify and dry runs, without reconciling
// and without writing. When the database is missing, empty or damaged but a slot is active,
// it returns a temporary database rebuilt from the slot manifests (Rebuilt and Damage say
// so); the next check rebuilds the real one.
func (a *Agent) OpenDBReadOnly() (*store.DB, error) {
	if err := a.openState(false); errors.Is(err, os.ErrNotExist) {
		return nil, a.errNothingYet()
	} else if err != nil {
		return nil, err
	}
	root, _ := a.slots.Root()
	db, err := store.Open(root, dbName, store.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err == nil {
		if floor, ferr := db.TimeFloor(); ferr == nil {
			a.clock.Raise(floor) // a device without a clock: status judges staleness by the floor
		}
		return db, nil
	}
	if !(errors.Is(err, os.ErrNotExist) || errors.Is(err, store.ErrDamaged)) {
		return db, err
	}
	active, aerr := a.slots.Active()
	if errors.Is(aerr, installer.ErrNoSlot) && errors.Is(err, os.ErrNotExist) {
		return nil, a.errNothingYet()
	}
	if aerr != nil {
		return nil, fmt.Errorf("%v; and %w", err, aerr)
	}
	m, merr := a.slots.Manifest(active)
	if merr != nil {
		return nil, fmt.Errorf("%v; and the active slot %s has no readable manifest: %w", err, active, merr)
	}
	view, verr := store.OpenTemp()
	if verr != nil {
		return nil, verr
	}
	if verr := view.SetState(manifestState(active, m, a.Now())); verr != nil {
		view.Close()
		return nil, verr
	}
	view.Rebuilt, view.Damage = true, err.Error()
	return view, nil
}

// manifestState is the record of slot s rebuilt from its manifest.
func manifestState(s string, m *installer.Manifest, now time.Time) *store.State {
	return &store.State{Generation: store.Generation{N: m.Generation, Slot: s, Apps: m.Apps}, Status: store.StatusCommitted, Since: now}
}

// Lock takes the state directory's instance lock; release it when done.
func (a *Agent) Lock() (func(), error) {
	if err := a.openState(true); err != nil {
		return nil, err
	}
	root, _ := a.slots.Root()
	return lockDir(root)
}

// now is the agent's idea of the time: never earlier than the time floor.
func (a *Agent) now(*store.DB) time.Time { return a.clock.Now() }

// CheckOptions of one check.
type CheckOptions struct {
	DryRun bool
}
