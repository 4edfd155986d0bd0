// Package agent is the update cycle: the device's facts and installed set go out as a
// canonical request, the answer is verified, staged into the inactive slot, switched to
// atomically and recorded. The daemon loop runs the same cycle on a schedule.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/checklog"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/health"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/report"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/internal/update"
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
	ErrRolledBack = update.ErrRolledBack
	// ErrInterrupted: a signal stopped the check (exit 1); nothing half-made is active.
	ErrInterrupted = update.ErrInterrupted
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

// What a check says (internal/result).
type (
	// Result is what `check --once --json` prints.
	Result = result.Result
	// AppResult is one app of a check's answer.
	AppResult = result.AppResult
	// Delivery is how an app arrived and what it cost.
	Delivery = store.Delivery
	// Refusal is a release the device will not install again until the server offers another.
	Refusal = store.Refusal
	// Deferral is a release a phased rollout keeps from this device for now.
	Deferral = store.Deferral
	// State is a step of the update state machine.
	State = update.State
)

// How an app arrived (Result, status).
const (
	DeliveryPatch   = protocol.DeliveryPatch
	DeliveryChunks  = protocol.DeliveryChunks
	DeliveryFull    = protocol.DeliveryFull
	DeliveryPayload = protocol.DeliveryPayload
)

// Results of a check.
const (
	ResultUpToDate  = result.UpToDateResult
	ResultUpdated   = result.Updated
	ResultFailed    = result.FailedResult
	ResultStaged    = result.Staged
	ResultAvailable = result.Available
)

// RetryError carries a server's Retry-After (protocol.RetryError).
type RetryError = protocol.RetryError

// Agent is what cmd/ calls: one configuration's update engine (internal/update) and the
// commands around it.
type Agent struct {
	*update.Engine
	tidy    bool             // the state directory was opened for writing (and tidied)
	Reports *report.Reporter // report.url's outbox and poster (nil: none)
	quiet   *checklog.Repeat // the daemon's next poll, while nothing changes (quietpoll.go)
}

// Option changes how New builds an agent (tests only).
type Option func(*options)

type options struct{ loopbackHTTP bool }

// LoopbackHTTP makes the agent follow plain http to loopback where https is required (a
// redirect, a download URL), as a test build (-tags otatest) does: for tests that run the
// agent in-process against the test server. cmd/ota-agent never passes it.
func LoopbackHTTP() Option { return func(o *options) { o.loopbackHTTP = true } }

// New checks what the configuration names (trust keys, CA file) and builds the client.
func New(cfg *Config, log *slog.Logger, opts ...Option) (*Agent, error) {
	o := options{loopbackHTTP: testBuild}
	for _, opt := range opts {
		opt(&o)
	}
	a := &Agent{Engine: &update.Engine{Cfg: cfg, Log: log, Slots: installer.Slots{Dir: cfg.Path(cfg.StateDir)}, Status: func(string) {}, Now: time.Now}}
	a.Clock = trust.NewClock(func() time.Time { return a.Now() }, buildFloor())
	a.Health = health.Checker{Cfg: cfg, Log: log, Status: func(s string) { a.Status(s) }}
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
		a.Keys = append(a.Keys, pub)
	}
	c, err := transport.NewHTTPClient(transport.ClientOptions{
		CAFile: cfg.Named(cfg.Server.CAFile), Pins: cfg.Server.PinSHA256,
		ClientCert: cfg.Named(cfg.Server.ClientCert), ClientKey: cfg.Named(cfg.Server.ClientKey), Proxy: cfg.Server.Proxy,
		HeaderTimeout: cfg.Server.Timeout, StallTimeout: cfg.Server.StallTimeout, Now: a.Clock.Now, Learn: a.Clock.Raise, RedirectHosts: cfg.Hosts(),
		Limit: limiter(cfg, a.Clock.Now), MinRate: int64(cfg.Server.MinRate),
		UserAgent: "ota-agent/" + Version, LoopbackHTTP: o.loopbackHTTP,
	})
	if err != nil {
		return nil, err
	}
	a.HTTP = c
	if a.Reports, err = report.New(cfg, log, a.Clock.Now, "ota-agent/"+Version, o.loopbackHTTP); err != nil {
		return nil, err
	}
	a.Proto = &protocol.Client{Cfg: cfg, HTTP: c, Log: log, LoopbackHTTP: o.loopbackHTTP}
	a.Trust = &trust.Verifier{Keys: a.Keys, Cfg: cfg, HTTP: c, Log: log, Clock: a.Clock, FirmwareURL: a.Proto.FirmwareURL}
	a.testHooks()
	return a, nil
}

// CloseIdleConnections drops kept-alive connections (TLS sessions stay cached).
func (a *Agent) CloseIdleConnections() { a.HTTP.CloseIdleConnections() }

// Config returns the agent's configuration.
func (a *Agent) Config() *Config { return a.Cfg }

func (a *Agent) dbPath() string { return filepath.Join(a.Slots.Dir, dbName) }

// dbName is the database's name in the state directory.
const dbName = "agent.db"

// openState opens the state directory once (every later file operation under it goes
// through that os.Root). create makes it and removes anything planted at the agent's own
// names; without it nothing is written and a missing directory is os.ErrNotExist.
func (a *Agent) openState(create bool) error {
	if a.Slots.Open() && (a.tidy || !create) {
		return nil
	}
	a.Slots.Close()
	l, err := installer.OpenState(a.Cfg.Root, a.Slots.Dir, create, func(path, was string) {
		a.Log.Error("removed what was planted in the state directory", "path", path, "was", was)
	})
	if err != nil {
		return err
	}
	a.Slots, a.tidy = l, create
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
func (a *Agent) Close() error { return a.Slots.Close() }

// OpenDB opens the database for writing (creating the state directory). It only opens:
// recovery from an interrupted run is Recover, which check, run and the commands that
// change something call by name.
func (a *Agent) OpenDB() (*store.DB, error) {
	if err := a.openState(true); err != nil {
		return nil, err
	}
	root, _ := a.Slots.Root()
	db, err := store.Open(root, dbName, store.Options{Timeout: 5 * time.Second})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w: %v", ErrBusy, err)
	}
	if err != nil {
		return nil, err
	}
	if db.Rebuilt {
		a.Log.Error("database was damaged; moved aside (agent.db.corrupt-*) and rebuilt from the slot manifests", "path", a.dbPath(), "damage", db.Damage)
	}
	if floor, err := db.TimeFloor(); err == nil {
		a.Clock.Raise(floor)
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
	root, _ := a.Slots.Root()
	db, err := store.Open(root, dbName, store.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err == nil {
		if floor, ferr := db.TimeFloor(); ferr == nil {
			a.Clock.Raise(floor) // a device without a clock: status judges staleness by the floor
		}
		return db, nil
	}
	if !(errors.Is(err, os.ErrNotExist) || errors.Is(err, store.ErrDamaged)) {
		return db, err
	}
	active, aerr := a.Slots.Active()
	if errors.Is(aerr, installer.ErrNoSlot) && errors.Is(err, os.ErrNotExist) {
		return nil, a.errNothingYet()
	}
	if aerr != nil {
		return nil, fmt.Errorf("%v; and %w", err, aerr)
	}
	m, merr := a.Slots.Manifest(active)
	if merr != nil {
		return nil, fmt.Errorf("%v; and the active slot %s has no readable manifest: %w", err, active, merr)
	}
	view, verr := store.OpenTemp()
	if verr != nil {
		return nil, verr
	}
	if verr := view.SetState(update.ManifestState(active, m, a.Now())); verr != nil {
		view.Close()
		return nil, verr
	}
	view.Rebuilt, view.Damage = true, err.Error()
	return view, nil
}

// Lock takes the state directory's instance lock; release it when done.
func (a *Agent) Lock() (func(), error) {
	if err := a.openState(true); err != nil {
		return nil, err
	}
	root, _ := a.Slots.Root()
	return lockDir(root)
}

// now is the agent's idea of the time: never earlier than the time floor.
func (a *Agent) now(*store.DB) time.Time { return a.Clock.Now() }

// CheckOptions of one check.
type CheckOptions struct {
	DryRun bool
}
