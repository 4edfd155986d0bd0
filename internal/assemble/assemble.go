// Package assemble makes a new generation in the staging slot: it takes the server's answer
// (or an offline payload) in through delivery, resolves pins, plans against what the device
// has, verifies every binary (trust), sets aside what the plan's rules hold back, and carries
// the unchanged apps over. It never touches the active slot: the update machine seals,
// switches and judges what it made.
package assemble

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/osimage"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Env is what an assembly works with: the configuration and the rooms it drives.
type Env struct {
	Cfg    *config.Config
	Log    *slog.Logger
	HTTP   *http.Client
	Slots  installer.Slots
	Proto  *protocol.Client
	Trust  *trust.Verifier
	Keyed  bool             // trust.keys are configured
	Status func(string)     // one line of progress a person can read
	Step   func(string)     // crash points of the tests
	Now    func() time.Time // the device's time (never below the time floor)
	Facts  protocol.Facts   // what the request said about the device
	OS     *osimage.Slots   // the OS image's A/B partitions (nil: the OS image is an app)
}

// Assembly is one new generation being made in St, from what the device has (State,
// Installed, From) and what arrived.
type Assembly struct {
	Env
	DB         *store.DB
	INM        string // the If-None-Match the request sent (pins are resolved against it)
	Mode       string // protocol.ModeFull | ModeMetadata
	State      *store.State
	Installed  map[string]store.App // what the plan is made against
	From       string               // where unchanged apps are carried from: the active slot, or a staged one
	Offline    bool                 // `ota-agent install`: apps not in the payload are kept
	OfflineDir string               // ... from a directory of binaries and .release files

	St      *installer.Staging
	Details *packaging.Details
	Plan    *protocol.Plan
	Got     map[string]packaging.Digests // member → digests of what arrived
	Bytes   int64                        // received so far, reported even when the install fails
	Via     map[string]store.Delivery    // app → how it arrived

	Next      *store.Generation           // the generation made (its apps as they are verified)
	Apps      map[string]result.AppResult // every app of it, for the result
	Removed   []string                    // apps no longer offered
	Unlisted  []string                    // apps an unsigned answer did not name, kept
	OSItem    *protocol.PlanItem          // the OS image, bound for its partition
	OSRec     store.App
	OSWritten *installer.Written // ... streamed into it (delivery), read back before it is tried
	DirChange bool               // the directory slots change (else only the OS image did)
	// Deferred are the releases phased rollouts keep from this device, by MD5 (rollout.go).
	Deferred map[string]store.Deferral
}

// IsOS says whether app is the OS image that goes to a partition.
func (a *Assembly) IsOS(app string) bool { return a.OS != nil && app == a.OS.App }

// Receive streams a full payload into staging, or reads a metadata answer and downloads each
// changed binary; then the plan is known, and Next is generation gen. resp is the server's
// 200 (an offline install passes its payload as one).
func (a *Assembly) Receive(ctx context.Context, resp *http.Response, gen int64) error {
	if a.Got == nil {
		a.Got = map[string]packaging.Digests{}
	}
	var err error
	fetch := a.fetcher()
	if a.OfflineDir != "" {
		a.Details, a.Got, a.Bytes, err = fetch.ReceiveDir(a.OfflineDir, a.St)
	} else if a.Mode == protocol.ModeFull {
		a.Details, a.Got, a.Bytes, err = fetch.ReceivePayload(resp, a.St)
	} else if a.Details, err = packaging.DecodeDetails(resp.Body); err != nil {
		err = fmt.Errorf("%w: %v", fault.ErrRejected, err)
	}
	a.OSWritten = fetch.OSWritten()
	if err != nil {
		return err
	}
	if err := a.settle(ctx); err != nil {
		return err
	}
	rules, err := a.Rules(a.DB, a.State)
	if err != nil {
		return err
	}
	if a.Plan, err = protocol.MakePlan(a.Details, a.Installed, rules); err != nil {
		return err
	}
	if a.Mode == protocol.ModeFull {
		a.deferredSkips()
		if err := protocol.SameMembers(a.Details, a.Got); err != nil {
			return err
		}
		if err := a.dropHeld(); err != nil {
			return err
		}
	} else {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
		if err := a.fetchAll(ctx, fetch); err != nil {
			return err
		}
	}
	a.Next = &store.Generation{N: gen, Slot: a.St.Slot(), Apps: map[string]store.App{}}
	a.Apps = map[string]result.AppResult{}
	return nil
}

// fetchAll brings each binary of a metadata answer's plan into staging (delivery.Fetcher:
// a patch, a chunk index or the whole file), after the space they need is checked.
func (a *Assembly) fetchAll(ctx context.Context, fetch *delivery.Fetcher) error {
	if err := fetch.Clean(a.Plan); err != nil {
		return err
	}
	a.statementsFirst(ctx)
	if err := a.Defer(ctx); err != nil {
		return err
	}
	if err := fetch.CheckSpace(a.Plan, a.Details.Entries); err != nil {
		return err
	}
	if a.Via == nil {
		a.Via = map[string]store.Delivery{}
	}
	for _, item := range a.Plan.Download {
		if a.IsOS(item.App) && a.OS.Waiting(a.DB) != nil {
			continue // not fetched: Verify keeps the image set to try (osimage.Slots.Waiting)
		}
		d, via, err := fetch.Fetch(ctx, item, a.Details.Entries[item.App], a.St)
		a.Bytes += via.Downloaded
		a.Via[item.App] = via
		if err != nil {
			return err
		}
		a.Got[item.Member()] = d
		if w := fetch.OSWritten(); w != nil {
			a.OSWritten = w
		}
	}
	return nil
}

// statementsFirst: with trust keys, a binary whose entry carries no signed statement (an
// unmodified reference server names only its version and url) has its `.release` fetched
// from the firmware CDN before the binary rather than after it (the same one request), and
// the statement's fields become the entry's: the download then knows its exact size and
// SHA-256, so a patch or a chunk index can be tried, and Verify checks the signatures of
// this statement as if it had come inline. A statement that cannot be had now, or names
// another release, is left to Verify, which fetches it again and refuses with the reason.
func (a *Assembly) statementsFirst(ctx context.Context) {
	for _, item := range a.Plan.Download {
		a.inline(ctx, item.App)
	}
}

// inline makes app's published statement (its .release) the entry's, with trust keys, when
// the entry carries no signature: one request, whoever asks next (statementsFirst, Verify).
func (a *Assembly) inline(ctx context.Context, app string) {
	e := a.Details.Entries[app]
	if !a.Keyed || len(e.Signatures()) > 0 {
		return
	}
	rf, err := a.Trust.FetchRelease(ctx, app, e)
	if err != nil || rf.App != app || rf.Version != e.LatestVersion || e.MD5 != "" && rf.MD5 != e.MD5 {
		return
	}
	e.MD5, e.SHA256, e.Size, e.Serial, e.Sig, e.KeyID, e.Class, e.Sigs = rf.MD5, rf.SHA256, rf.Size, rf.Serial, rf.Sig, rf.KeyID, rf.Class, rf.Sigs
	a.Details.Set(app, e)
}

// fetcher is the assembly's delivery.Fetcher: it builds from what the plan is made against.
func (a *Assembly) fetcher() *delivery.Fetcher {
	return delivery.New(delivery.Options{Cfg: a.Cfg, Log: a.Log, HTTP: a.HTTP, Slots: a.Slots, DB: a.DB, Proto: a.Proto,
		HashMD5: a.Trust.HashMD5(), Keyed: a.Keyed, Status: a.Status, Step: a.Step,
		OS: a.OS, From: a.From, Installed: a.Installed})
}

// settle makes what arrived the answer the plan is made from: pins resolved (the server's),
// or every installed app kept (an offline payload adds; it never removes).
func (a *Assembly) settle(ctx context.Context) error {
	if !a.Offline {
		return a.applyPins(ctx)
	}
	for app, x := range a.Installed {
		if _, ok := a.Details.Entries[app]; !ok {
			a.Details.Set(app, packaging.Entry{LatestVersion: x.Version, StatusCode: 304, MD5: x.MD5})
		}
	}
	return nil
}
