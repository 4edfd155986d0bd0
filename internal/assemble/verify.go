package assemble

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Verify checks every received binary and moves it to its place in the staging slot. A
// verified release this device refused, or the very bytes it has, is set aside (the plan's
// rules, now with the real digests: the server's claims were only a first sieve).
func (a *Assembly) Verify(ctx context.Context) error {
	a.Status("verifying")
	rules, err := a.Rules(a.DB, a.State)
	if err != nil {
		return err
	}
	items := a.Plan.Download
	a.Plan.Download = nil
	for _, item := range items {
		if _, ok := a.Got[item.Member()]; !ok && a.IsOS(item.App) { // not fetched
			a.waitForReboot(item)
			continue
		}
		var have *store.App
		if h, ok := a.Installed[item.App]; ok {
			have = &h
		}
		a.inline(ctx, item.App)
		e := a.Details.Entries[item.App]
		rec, err := a.Trust.Verify(ctx, a.DB, a.Facts, item.App, e, a.Got[item.Member()], have)
		if errors.Is(err, trust.ErrNeedMD5) {
			rec, err = a.verifyRehashed(ctx, item, e, have)
		}
		if err != nil {
			if a.Mode == protocol.ModeMetadata {
				a.fetcher().Drop(item.Member()) // never resume from bytes that failed verification
			}
			a.Plan.Download = items // what the failed run was installing
			return a.budget(item, cmp.Or(e.MD5, a.Got[item.Member()].MD5), a.Got[item.Member()].SHA256, err)
		}
		why := rules.Hold(item.App, rec.MD5, a.Installed)
		if ok, err := a.admitted(ctx, item); err != nil {
			return err
		} else if !ok && why == "" {
			why = "deferred"
		}
		if a.Plan.Held(item.App, why, have != nil) {
			a.Log.Info("not installed: "+holdText[why], "app", item.App, "version", rec.Version, "md5", rec.MD5)
			if err := a.St.Remove(delivery.Incoming(item.Member())); err != nil {
				return err
			}
			continue
		}
		if a.IsOS(item.App) && a.OSWritten == nil { // hashed only
			a.waitForReboot(item)
			continue
		}
		if err := a.place(item, rec); err != nil {
			return err
		}
	}
	return nil
}

// waitForReboot keeps the OS image installed while another is set to try at the next boot
// (osimage.Slots.Waiting): the new one follows that reboot.
func (a *Assembly) waitForReboot(item protocol.PlanItem) {
	a.Log.Info("not installed now: the OS image set to try keeps its slot until its reboot; this one follows it", "app", item.App, "version", item.Version)
	a.Plan.Keep = append(a.Plan.Keep, item.App)
}

// place puts a verified binary where it goes: the OS image to its partition (later), an app
// into the staging slot.
func (a *Assembly) place(item protocol.PlanItem, rec store.App) error {
	a.Plan.Download = append(a.Plan.Download, item)
	via := a.Via[item.App]
	if via.Path == "" && a.Mode == protocol.ModeFull {
		via = store.Delivery{Path: protocol.DeliveryPayload, Size: rec.Size}
	}
	a.Apps[item.App] = result.AppResult{Version: rec.Version, MD5: rec.MD5, SHA256: rec.SHA256, Serial: rec.Serial, Changed: true, Delivery: via}
	a.Log.Info("verified", "app", item.App, "version", rec.Version, "bytes", rec.Size, "signed", rec.Signed, "serial", rec.Serial)
	if a.IsOS(item.App) {
		a.OSItem, a.OSRec = &item, rec // goes to a partition, not into the directory slot
		return nil
	}
	if err := a.St.Rename(delivery.Incoming(item.Member()), item.App); err != nil {
		return err
	}
	a.Next.Apps[item.App] = rec
	a.DirChange = true
	return nil
}

// Compose carries unchanged apps over from the active slot and notes removals.
func (a *Assembly) Compose() error {
	for _, app := range a.Plan.Carried() {
		x := a.Installed[app]
		a.Apps[app] = result.AppResult{Version: x.Version, MD5: x.MD5, SHA256: x.SHA256, Serial: x.Serial}
		if a.IsOS(app) {
			continue
		}
		if err := a.St.CarryOver(app, a.From); err != nil {
			return err
		}
		a.Next.Apps[app] = x
	}
	for _, app := range a.Plan.Unlisted {
		a.Log.Warn("kept: not in the server's answer, and an unsigned answer removes nothing (trust.allow_unsigned_removals)", "app", app, "version", a.Installed[app].Version)
	}
	for _, app := range a.Plan.Remove {
		if a.IsOS(app) {
			continue
		}
		a.Log.Warn("removing: no longer offered", "app", app, "version", a.Installed[app].Version)
		a.Removed = append(a.Removed, app)
		a.DirChange = true
	}
	a.Unlisted = a.Plan.Unlisted
	return nil
}

// verifyRehashed hashes a received file again, with MD5, and verifies it.
func (a *Assembly) verifyRehashed(ctx context.Context, item protocol.PlanItem, e packaging.Entry, have *store.App) (store.App, error) {
	d, err := a.digest(item)
	if err != nil {
		return store.App{}, err
	}
	a.Got[item.Member()] = d
	return a.Trust.Verify(ctx, a.DB, a.Facts, item.App, e, d, have)
}

// digest hashes a received member again (with MD5): from staging, or the OS image from its
// partition.
func (a *Assembly) digest(item protocol.PlanItem) (packaging.Digests, error) {
	member := item.Member()
	var r io.Reader
	if w := a.OSWritten; w != nil && a.IsOS(item.App) {
		d, err := a.OS.Parts.ReadBack(w.Slot, w.Size, true)
		if err == nil {
			w.Sum = d
		}
		return d, err
	} else {
		f, err := a.St.Open(delivery.Incoming(member))
		if err != nil {
			return packaging.Digests{}, err
		}
		defer f.Close()
		r = f
	}
	d, err := packaging.DigestReader(r)
	if err != nil {
		return d, fmt.Errorf("hash %s: %w", member, err)
	}
	return d, nil
}
