// Package delivery brings what an answer names into the staging directory: a full payload's
// members, an offline directory's binaries, or each changed binary of a metadata answer
// along a list of strategies (a patch or block patch from the installed copy, a chunk
// index, the whole file), falling back from one to the next. It counts every byte received
// and checks the space they need first. Nothing it writes is trusted: the update machine
// verifies every file before it is installed.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/osimage"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

type (
	// Plan and PlanItem: what an answer asks for (protocol).
	Plan     = protocol.Plan
	PlanItem = protocol.PlanItem
	// Progress is the resume record of a download kept in bbolt.
	Progress = store.Progress
	// Delivery is how an app arrived and what it cost.
	Delivery = store.Delivery
)

// Options are what a Fetcher works with; the update machine makes one for each run.
type Options struct {
	Cfg     *config.Config
	Log     *slog.Logger
	HTTP    *http.Client
	Slots   installer.Slots
	DB      *store.DB
	Proto   *protocol.Client
	HashMD5 bool           // hash received bytes with MD5 too (no trust keys)
	Keyed   bool           // trust keys are configured: an offline binary needs its .release
	Status  func(string)   // one line of progress a person can read
	Step    func(string)   // crash points of the tests (patch-applying)
	OS      *osimage.Slots // the OS image's A/B partitions (nil: the OS image is an app)
	// From is the slot unchanged apps are carried from ("" before the first install), and
	// Installed what the plan is made against: what delta strategies build from.
	From      string
	Installed map[string]installer.App
}

// Fetcher brings binaries into staging (see the package comment).
type Fetcher struct {
	cfg       *config.Config
	log       *slog.Logger
	http      *http.Client
	slots     installer.Slots
	db        *store.DB
	proto     *protocol.Client
	hashMD5   bool
	keyed     bool
	status    func(string)
	step      func(string)
	os        *osimage.Slots
	written   *installer.Written // the OS image streamed into its partition
	from      string
	installed map[string]installer.App
}

// New makes a Fetcher.
func New(o Options) *Fetcher {
	f := &Fetcher{cfg: o.Cfg, log: o.Log, http: o.HTTP, slots: o.Slots, db: o.DB, proto: o.Proto, hashMD5: o.HashMD5, keyed: o.Keyed,
		status: o.Status, step: o.Step, os: o.OS, from: o.From, installed: o.Installed}
	if f.status == nil {
		f.status = func(string) {}
	}
	if f.step == nil {
		f.step = func(string) {}
	}
	return f
}

// Incoming is the staging name of a received member until it is verified and promoted.
func Incoming(member string) string { return ".in-" + member }

func incoming(member string) string { return Incoming(member) }

func (a *Fetcher) isOS(app string) bool { return a.os != nil && app == a.os.App }

// A strategy is one way a changed binary can come. It puts the file into staging and
// returns its digests and the bytes it received; a *fallBack error hands on to the next
// strategy, any other error ends the transfer (a network failure: the next check resumes).
type strategy struct {
	via   string
	fetch func(a *Fetcher, ctx context.Context, item PlanItem, e packaging.Entry, have installer.App, st *installer.Staging) (packaging.Digests, int64, error)
}

// strategies in the order they are tried: what the device holds first, the whole file last
// (it never falls back).
func strategies() []strategy {
	return []strategy{{protocol.DeliveryPatch, (*Fetcher).patched}, {protocol.DeliveryChunks, (*Fetcher).chunked}, {protocol.DeliveryFull, (*Fetcher).whole}}
}

// fallBack says why a strategy hands on: level Info when that is ordinary (nothing
// published), Warn when something was refused.
type fallBack struct {
	why   string
	level slog.Level
	err   error
}

func (f *fallBack) Error() string { return fmt.Sprintf("%s: %v", f.why, f.err) }

func skip(why string) error { return &fallBack{why: why, level: slog.LevelInfo} }
func refused(why string, err error) error {
	return &fallBack{why: why, level: slog.LevelWarn, err: err}
}

// deltaSource is the installed record of app to build its new release from, and whether a
// delta may be tried at all (the one rule every delta strategy and the dry run share):
// delta.enabled, a release of known size, and a copy the device holds whose SHA-256 it
// knows, in the slot carried from or on the booted partition.
func (a *Fetcher) deltaSource(app string, e packaging.Entry) (installer.App, bool) {
	have, ok := a.installed[app]
	return have, ok && a.cfg.Delta.Enabled && have.SHA256 != "" && e.Size > 0 && (a.from != "" || a.isOS(app))
}

// Fetch puts item's binary into st along the strategies: its digests, and how it came
// (every byte received by every strategy tried counts).
func (a *Fetcher) Fetch(ctx context.Context, item PlanItem, e packaging.Entry, st *installer.Staging) (packaging.Digests, Delivery, error) {
	via := Delivery{Size: e.Size}
	have, delta := a.deltaSource(item.App, e)
	for _, s := range strategies() {
		if !delta && s.via != protocol.DeliveryFull {
			continue
		}
		d, n, err := s.fetch(a, ctx, item, e, have, st)
		via.Downloaded += n
		var fb *fallBack
		if errors.As(err, &fb) {
			a.log.Log(ctx, fb.level, "falling back from "+s.via+": "+fb.why, "app", item.App, "version", item.Version, "error", fb.err)
			continue
		}
		if err == nil {
			via.Path = s.via
		}
		return d, via, err
	}
	return packaging.Digests{}, via, fmt.Errorf("%s %s: no way to fetch it", item.App, item.Version)
}

// whole fetches the whole file from the firmware CDN (resumable).
func (a *Fetcher) whole(ctx context.Context, item PlanItem, e packaging.Entry, _ installer.App, st *installer.Staging) (packaging.Digests, int64, error) {
	if a.isOS(item.App) {
		return a.streamOS(ctx, item, e)
	}
	return a.download(ctx, item, e, st)
}
