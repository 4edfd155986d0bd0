package update

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Assembling the new generation in the staging slot: what arrived, verified, and what is
// carried over.

// receiveAnswer streams the full payload into staging, or reads the metadata and downloads
// each changed binary; then the plan is known.
func (j *job) receiveAnswer(ctx context.Context, resp *http.Response) error {
	var err error
	fetch := j.fetcher()
	if j.offlineDir != "" {
		j.details, j.got, j.bytes, err = fetch.ReceiveDir(j.offlineDir, j.st)
	} else if j.mode == protocol.ModeFull {
		j.details, j.got, j.bytes, err = fetch.ReceivePayload(resp, j.st)
	} else if j.details, err = packaging.DecodeDetails(resp.Body); err != nil {
		err = fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if err != nil {
		return err
	}
	if err := j.settleAnswer(ctx); err != nil {
		return err
	}
	rules, err := j.a.Rules(j.db, j.state)
	if err != nil {
		return err
	}
	if j.plan, err = protocol.MakePlan(j.details, j.installed, rules); err != nil {
		return err
	}
	if j.mode == protocol.ModeFull {
		if err := protocol.SameMembers(j.details, j.got); err != nil {
			return err
		}
		if err := j.dropHeld(); err != nil {
			return err
		}
	} else {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
		if err := j.fetchAll(ctx, fetch); err != nil {
			return err
		}
	}
	gen := int64(0)
	if j.state != nil {
		gen = j.state.N
		if j.state.Previous != nil {
			gen = max(gen, j.state.Previous.N) // numbers never repeat, even after a rollback
		}
	}
	j.rec.Next = &store.Generation{N: gen + 1, Slot: j.st.Slot(), Apps: map[string]store.App{}}
	j.made.gen = gen + 1
	j.res.Result, j.res.Slot, j.res.Bytes = ResultUpdated, j.st.Slot(), j.bytes
	return nil
}

// fetchAll brings each binary of a metadata answer's plan into staging (delivery.Fetcher:
// a patch, a chunk index or the whole file), after the space they need is checked.
func (j *job) fetchAll(ctx context.Context, fetch *delivery.Fetcher) error {
	if err := fetch.Clean(j.plan); err != nil {
		return err
	}
	if err := fetch.CheckSpace(j.plan, j.details.Entries); err != nil {
		return err
	}
	if j.via == nil {
		j.via = map[string]Delivery{}
	}
	for _, item := range j.plan.Download {
		d, via, err := fetch.Fetch(ctx, item, j.details.Entries[item.App], j.st)
		j.bytes += via.Downloaded
		j.via[item.App] = via
		if err != nil {
			return err
		}
		j.got[item.Member()] = d
	}
	return nil
}

// fetcher is the run's delivery.Fetcher: it builds from what the plan is made against.
func (j *job) fetcher() *delivery.Fetcher {
	a := j.a
	return delivery.New(delivery.Options{Cfg: a.Cfg, Log: a.Log, HTTP: a.HTTP, Slots: a.Slots, DB: j.db, Proto: a.Proto,
		HashMD5: a.Trust.HashMD5(), Keyed: len(a.Keys) > 0, Status: func(s string) { a.Status(s) }, Step: a.step,
		Parts: j.parts, OSApp: j.osApp, From: j.from, Installed: j.installed})
}

// settleAnswer makes what arrived the answer the plan is made from: pins resolved (the
// server's), or every installed app kept (an offline payload adds; it never removes).
func (j *job) settleAnswer(ctx context.Context) error {
	if !j.offline {
		return j.applyPins(ctx)
	}
	for app, x := range j.installed {
		if _, ok := j.details.Entries[app]; !ok {
			j.details.Set(app, packaging.Entry{LatestVersion: x.Version, StatusCode: 304, MD5: x.MD5})
		}
	}
	return nil
}

// verifyAll checks every received binary and moves it to its place in the staging slot. A
// verified release this device refused, or the very bytes it has, is set aside (the plan's
// rules, now with the real digests: the server's claims were only a first sieve).
func (j *job) verifyAll(ctx context.Context) error {
	j.a.Status("verifying")
	rules, err := j.a.Rules(j.db, j.state)
	if err != nil {
		return err
	}
	items := j.plan.Download
	j.plan.Download = nil
	for _, item := range items {
		var have *store.App
		if h, ok := j.installed[item.App]; ok {
			have = &h
		}
		e := j.details.Entries[item.App]
		rec, err := j.a.Trust.Verify(ctx, j.db, j.facts(), item.App, e, j.got[item.Member()], have)
		if errors.Is(err, trust.ErrNeedMD5) {
			rec, err = j.verifyRehashed(ctx, item, e, have)
		}
		if err != nil {
			if j.mode == protocol.ModeMetadata {
				j.fetcher().Drop(item.Member()) // never resume from bytes that failed verification
			}
			return j.a.budget(j.db, item, cmp.Or(e.MD5, j.got[item.Member()].MD5), j.got[item.Member()].SHA256, err)
		}
		if why := rules.Hold(item.App, rec.MD5, j.installed); j.plan.Held(item.App, why, have != nil) {
			j.a.Log.Info("not installed: "+holdText[why], "app", item.App, "version", rec.Version, "md5", rec.MD5)
			if err := j.st.Remove(delivery.Incoming(item.Member())); err != nil {
				return err
			}
			continue
		}
		j.plan.Download = append(j.plan.Download, item)
		via := j.via[item.App]
		if via.Path == "" && j.mode == protocol.ModeFull {
			via = Delivery{Path: DeliveryPayload, Size: rec.Size}
		}
		j.res.Apps[item.App] = AppResult{Version: rec.Version, MD5: rec.MD5, SHA256: rec.SHA256, Serial: rec.Serial, Changed: true, Delivery: via}
		j.a.Log.Info("verified", "app", item.App, "version", rec.Version, "bytes", rec.Size, "signed", rec.Signed, "serial", rec.Serial)
		if j.isOS(item.App) {
			j.osItem, j.osRec = &item, rec // goes to a partition, not into the directory slot
			continue
		}
		if err := j.st.Rename(delivery.Incoming(item.Member()), item.App); err != nil {
			return err
		}
		j.rec.Next.Apps[item.App] = rec
		j.dirChange = true
	}
	return nil
}

// composeApps carries unchanged apps over from the active slot and notes removals.
func (j *job) composeApps() error {
	for _, app := range j.plan.Carried() {
		x := j.installed[app]
		j.res.Apps[app] = AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		if j.isOS(app) {
			continue
		}
		if err := j.st.CarryOver(app, j.from); err != nil {
			return err
		}
		j.rec.Next.Apps[app] = x
	}
	for _, app := range j.plan.Unlisted {
		j.a.Log.Warn("kept: not in the server's answer, and an unsigned answer removes nothing (trust.allow_unsigned_removals)", "app", app, "version", j.installed[app].Version)
	}
	for _, app := range j.plan.Remove {
		if j.isOS(app) {
			continue
		}
		j.a.Log.Warn("removing: no longer offered", "app", app, "version", j.installed[app].Version)
		j.res.Removed = append(j.res.Removed, app)
		j.dirChange = true
	}
	j.res.Unlisted = j.plan.Unlisted
	return nil
}

// verifyRehashed hashes a received file again, with MD5, and verifies it.
func (j *job) verifyRehashed(ctx context.Context, item PlanItem, e packaging.Entry, have *store.App) (store.App, error) {
	f, err := j.st.Open(delivery.Incoming(item.Member()))
	if err != nil {
		return store.App{}, err
	}
	d, err := packaging.DigestReader(f)
	f.Close()
	if err != nil {
		return store.App{}, fmt.Errorf("hash %s: %w", item.Member(), err)
	}
	j.got[item.Member()] = d
	return j.a.Trust.Verify(ctx, j.db, j.facts(), item.App, e, d, have)
}
