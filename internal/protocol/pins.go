package protocol

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Pins (device.pins) win over attributes. The reference service selects every row an
// attribute names and every pinned row, so a pinned app an attribute also selects arrives
// twice: both files in a full payload, and in the JSON whichever row came last. The pinned
// row is the more specific choice. When an answer names a pinned app, the agent asks a second,
// narrow question (metadata: cpuArch, os and the pins, no attributes), whose rows for the
// pinned apps are exactly the pinned ones; those entries replace the pinned apps' entries.
// A pinned app with no row on its channel keeps what is installed. The other rows' MD5s
// (shadowed) go out in If-None-Match while the pin stays, so the server marks them
// unchanged; with v2 statements a pinned app installs only a statement of its pin's channel.

// pinned are the pinned apps (lower-case, as the server matches them) named in d or by a
// member of the payload.
func (a *Client) pinned(d *packaging.Details, members map[string]packaging.Digests) []string {
	var out []string
	for app := range a.Cfg.Device.Pins {
		app = strings.ToLower(app)
		_, listed := d.Entries[app]
		if listed || memberOf(app, members, d) != nil {
			out = append(out, app)
		}
	}
	slices.Sort(out)
	return out
}

// memberOf lists the payload members that are files of app: <app>_<version>, where no
// longer app name of the answer also fits (app names hold underscores; the JSON names every
// app the payload has a file of).
func memberOf(app string, members map[string]packaging.Digests, d *packaging.Details) []string {
	var out []string
	for m := range members {
		if owner(m, d.Apps) == app || owner(m, d.Apps) == "" && strings.HasPrefix(m, app+"_") {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// owner is the longest of apps whose files member may be ("" when none).
func owner(member string, apps []string) string {
	best := ""
	for _, app := range apps {
		if strings.HasPrefix(member, app+"_") && len(app) > len(best) {
			best = app
		}
	}
	return best
}

// pinAnswer asks the narrow question and returns the pinned apps' entries: the entry of the
// pinned row, or absent when the pinned channel has no row for the app.
func (a *Client) pinAnswer(ctx context.Context, device Facts, inm string, installed map[string]store.App, apps []string) (map[string]packaging.Entry, error) {
	facts := Facts{"cpuarch": device["cpuarch"], "os": device["os"]}
	for _, app := range apps {
		facts[app] = device[app]
	}
	ans, err := a.Ask(ctx, facts.Query(PayloadParam(ModeMetadata)), inm)
	if err != nil {
		return nil, fmt.Errorf("asking for the pinned rows (device.pins): %w", err)
	}
	defer ans.Resp.Body.Close()
	out := map[string]packaging.Entry{}
	switch ans.Status {
	case http.StatusNotModified: // every pinned row is installed (or refused, or on its way)
		for _, app := range apps {
			if x, ok := installed[app]; ok {
				out[app] = packaging.Entry{LatestVersion: x.Version, StatusCode: 304, MD5: x.MD5}
			}
		}
		return out, nil
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("asking for the pinned rows (device.pins): the server answered %d to a metadata request", ans.Status)
	}
	d, err := packaging.DecodeDetails(ans.Resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: the answer for the pinned rows (device.pins): %v", fault.ErrRejected, err)
	}
	for _, app := range apps {
		if e, ok := d.Entries[app]; ok {
			out[app] = e
		}
	}
	return out, nil
}

// PinResult is what ResolvePins decided: the members to drop from a full payload (they are
// shadowed too, once hashed) and the releases the pins shadow.
type PinResult struct {
	Drop     []string
	App      map[string]string // dropped member → its app
	Shadowed map[string]store.Shadow
}

// ResolvePins makes d's entries of pinned apps the pinned rows' (members: a full payload's
// files, nil in metadata mode; installed: what the plan is made against). It says so in the
// log when a pin and an attribute both select an app.
func (a *Client) ResolvePins(ctx context.Context, facts Facts, inm string, installed map[string]store.App, d *packaging.Details, members map[string]packaging.Digests) (*PinResult, error) {
	res := &PinResult{Shadowed: map[string]store.Shadow{}, App: map[string]string{}}
	apps := a.pinned(d, members)
	if len(apps) == 0 {
		return res, nil
	}
	want, err := a.pinAnswer(ctx, facts, inm, installed, apps)
	if err != nil {
		return nil, err
	}
	files := map[string][]string{} // before d changes
	for _, app := range apps {
		files[app] = memberOf(app, members, d)
	}
	for _, app := range apps {
		pin := facts[app]
		e, ok := want[app]
		if !ok {
			if x, have := installed[app]; have {
				e = packaging.Entry{LatestVersion: x.Version, StatusCode: 304, MD5: x.MD5}
			}
			a.Log.Warn("device.pins: no release on the pinned channel; the app stays as installed", "app", app, "pin", pin)
		}
		if old, listed := d.Entries[app]; listed && old.LatestVersion != e.LatestVersion {
			a.Log.Info("device.pins wins over an attribute that selects another release of the app", "app", app, "pin", pin, "pinned", e.LatestVersion, "shadowed", old.LatestVersion)
			if old.MD5 != "" {
				res.Shadowed[old.MD5] = store.Shadow{App: app, Version: old.LatestVersion, Pin: pin}
			}
		}
		keep := PlanItem{App: app, Version: e.LatestVersion}.Member()
		for _, m := range files[app] {
			if m != keep || e.StatusCode != 200 {
				res.Drop, res.App[m] = append(res.Drop, m), app
			}
		}
		if e.LatestVersion == "" {
			delete(d.Entries, app)
			d.Apps = slices.DeleteFunc(d.Apps, func(x string) bool { return x == app })
			continue
		}
		d.Set(app, e)
	}
	return res, nil
}

// ShadowMD5s are the recorded shadowed releases whose pin still holds: sent in
// If-None-Match.
func (a *Client) ShadowMD5s(db *store.DB, facts Facts) []string {
	m, err := db.Shadowed()
	if err != nil {
		return nil
	}
	var out []string
	for md5, s := range m {
		if facts[s.App] == s.Pin {
			out = append(out, md5)
		}
	}
	return out
}

// KeepShadows records shadowed releases for the next requests, dropping those of pins that
// changed.
func (a *Client) KeepShadows(db *store.DB, facts Facts, add map[string]store.Shadow) error {
	m, err := db.Shadowed()
	if err != nil {
		return err
	}
	before := maps.Clone(m)
	maps.Copy(m, add)
	maps.DeleteFunc(m, func(_ string, s store.Shadow) bool { return facts[s.App] != s.Pin })
	if maps.Equal(m, before) {
		return nil
	}
	return db.SetShadowed(m)
}
