package assemble

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/packaging/ramp"
	"github.com/ota-agent/ota-agent/store"
)

// Phased rollouts (protocol.md 3.10): with trust keys, a release whose verified statement
// carries a ramp this device has not reached, or a halted one, is deferred — taken out of the
// plan before a byte of it is fetched. Its MD5 then goes out in If-None-Match until the
// device's turn (update.Current), so the server leaves it out and the device keeps sharing
// its class's cache entries; at its turn the device asks without it and decides again on the
// statement it gets then (a halt or a new release shows).

// Defer takes the releases a phased rollout keeps from this device out of the plan and
// records every deferral still pending (store.Deferral) for the next request. Without trust
// keys a ramp is not honoured: an unsigned one is worth nothing.
func (a *Assembly) Defer(ctx context.Context) error {
	if !a.Keyed || a.Plan == nil {
		return nil
	}
	old, err := a.DB.Deferred()
	if err != nil {
		return err
	}
	now, deferred := a.Now(), map[string]store.Deferral{}
	for m, d := range old { // still waiting; the answer left it out for its MD5 (or the rules held it)
		if e, ok := a.Details.Entries[d.App]; ok && (e.StatusCode == 304 || slices.Contains(a.Plan.Deferred, d.App)) && d.Pending(now) {
			deferred[m] = d
		}
	}
	a.gate(ctx, func(item protocol.PlanItem, md5 string, d store.Deferral) {
		if was, ok := old[md5]; ok {
			d.Since = was.Since
		}
		deferred[md5] = d
		a.Log.Info("deferred by a phased rollout", "app", item.App, "version", item.Version, "halted", d.Halted, "turn", d.Turn, "ramp_percent", float64(d.Level)/1e4)
	})
	a.Deferred = deferred
	if len(old) == 0 && len(deferred) == 0 {
		return nil
	}
	return a.DB.SetDeferred(deferred)
}

// DeferDry is Defer for a dry run: the plan says what would be deferred; nothing is recorded.
func (a *Assembly) DeferDry(ctx context.Context) {
	a.statementsFirst(ctx)
	a.gate(ctx, func(protocol.PlanItem, string, store.Deferral) {})
}

// gate takes out of the plan each release a phased rollout keeps from this device, and tells
// deferred of it.
func (a *Assembly) gate(ctx context.Context, deferred func(item protocol.PlanItem, md5 string, d store.Deferral)) {
	keep := a.Plan.Download[:0]
	for _, item := range a.Plan.Download {
		md5, d, out := a.phase(ctx, item)
		if !out {
			keep = append(keep, item)
			continue
		}
		_, have := a.Installed[item.App]
		a.Plan.Held(item.App, "deferred", have)
		deferred(item, md5, d)
	}
	a.Plan.Download = keep
}

// phase decides one release of the plan on its verified statement: deferred (the MD5 its
// statement names, and why) or not. A statement that does not verify is not deferred: Verify
// refuses it with the reason.
func (a *Assembly) phase(ctx context.Context, item protocol.PlanItem) (string, store.Deferral, bool) {
	e := a.Details.Entries[item.App]
	if len(e.Signatures()) == 0 && e.Ramp == "" && e.Halted == 0 {
		return "", store.Deferral{}, false // statementsFirst found none published, or a reference entry
	}
	st, err := a.Trust.Statement(ctx, a.DB, a.Facts, item.App, e)
	if err != nil || st.Ramp == "" && st.Halted == 0 {
		return "", store.Deferral{}, false
	}
	ph, err := st.Class.Phase(a.point(item), a.Now())
	if err != nil || ph.In {
		return "", store.Deferral{}, false
	}
	return st.MD5, store.Deferral{App: item.App, Version: item.Version, Channel: st.Channel, Turn: ph.Turn, Halted: ph.Halted, Level: ph.Level, Since: a.Now()}, true
}

// point is where this device stands in the release's ramp (packaging.Point). A device
// without an identity takes its turn last.
func (a *Assembly) point(item protocol.PlanItem) int64 {
	id, err := a.Cfg.DeviceID()
	if err != nil {
		a.Log.Warn("phased rollout: this device has no identity, so it takes its turn at the end of the ramp", "err", err)
		return ramp.Full - 1
	}
	return ramp.Point(id, item.App, item.Version)
}

// Deferrals lists the deferrals recorded by this run, by app.
func (a *Assembly) Deferrals() []store.Deferral {
	out := make([]store.Deferral, 0, len(a.Deferred))
	for _, d := range a.Deferred {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

// Probe takes a metadata answer asked before a full payload (full-payload mode with trust
// keys: the payload's own statements come last, after its bytes): its statements are checked
// and the ramps decide. It returns the MD5s to add to the payload request's If-None-Match
// (the releases deferred, which the server then leaves out of the tarball), and whether that
// request is needed at all: not when every change the answer offers is deferred.
func (a *Assembly) Probe(ctx context.Context, body io.Reader) (inm []string, ask bool, err error) {
	defer func() { a.Details, a.Plan = nil, nil }()
	raw, err := io.ReadAll(io.LimitReader(body, packaging.MaxDetailsBytes+1))
	if err != nil {
		return nil, false, protocol.NetError("reading the metadata answer", err) // try later
	}
	if a.Details, err = packaging.DecodeDetails(bytes.NewReader(raw)); err != nil {
		// Not what a metadata answer is: ask for the payload; Verify still holds every
		// release to its ramp (admitted).
		a.Log.Warn("the metadata answer asked before the payload is not one; asking for the payload (phased rollouts are judged when it arrives)", "err", err)
		return nil, true, nil
	}
	rules, err := a.Rules(a.DB, a.State)
	if err != nil {
		return nil, false, err
	}
	if a.Plan, err = protocol.MakePlan(a.Details, a.Installed, rules); err != nil {
		return nil, false, err
	}
	a.statementsFirst(ctx)
	before := len(a.Plan.Download)
	if err := a.Defer(ctx); err != nil {
		return nil, false, err
	}
	for m, d := range a.Deferred {
		if d.Pending(a.Now()) || d.Halted {
			inm = append(inm, m)
		}
	}
	return inm, len(a.Plan.Download) > 0 || len(a.Plan.Remove) > 0 || before == len(a.Plan.Download), nil
}

// deferredSkips: the apps a payload request left out by the MD5s Probe deferred (halted ones
// too) are deferred, not skipped.
func (a *Assembly) deferredSkips() {
	apps := map[string]bool{}
	for _, d := range a.Deferred {
		apps[d.App] = true
	}
	skip := a.Plan.Skip[:0]
	for _, app := range a.Plan.Skip {
		if apps[app] {
			a.Plan.Deferred = append(a.Plan.Deferred, app)
		} else {
			skip = append(skip, app)
		}
	}
	a.Plan.Skip = skip
}

// admitted is the last word on a verified release before it is placed: a server may ignore
// If-None-Match or answer the question asked before the payload with something else, so a
// release its signed ramp keeps out is set aside and deferred here too.
func (a *Assembly) admitted(ctx context.Context, item protocol.PlanItem) (bool, error) {
	if !a.Keyed {
		return true, nil
	}
	md5, d, out := a.phase(ctx, item)
	if !out {
		return true, nil
	}
	if a.Deferred == nil {
		var err error
		if a.Deferred, err = a.DB.Deferred(); err != nil {
			return false, err
		}
	}
	a.Deferred[md5] = d
	a.Log.Warn("deferred by a phased rollout after its bytes arrived (the server did not leave it out)", "app", item.App, "version", item.Version)
	return false, a.DB.SetDeferred(a.Deferred)
}

// AskFirst asks for the metadata before a full payload (trust keys: the payload's statements
// come after its bytes), so a phased rollout defers a release before a tarball carries it
// (Probe): INM then names the deferred MD5s for the payload request, and ask says whether
// that request is needed at all (a 304, or everything offered deferred: note says which).
// It costs one metadata request more on a check that finds something (protocol.md 3.10).
func (a *Assembly) AskFirst(ctx context.Context) (ask bool, note string, err error) {
	ans, _, err := a.Proto.FetchAnswer(ctx, a.DB, a.Facts, a.INM, protocol.ModeMetadata, false)
	if err != nil {
		return false, "", err
	}
	defer ans.Resp.Body.Close()
	if ans.Status == http.StatusNotModified {
		return false, "", nil
	}
	more, ask, err := a.Probe(ctx, ans.Resp.Body)
	if err != nil || !ask {
		return false, "every release offered waits for this device's turn in a phased rollout: nothing fetched", err
	}
	if len(more) > 0 && a.INM != "" {
		more = append(more, strings.Split(a.INM, ",")...)
	}
	if len(more) > 0 {
		a.INM = packaging.SortedMD5s(more)
	}
	return true, "", nil
}

// Offered are the releases the plan was installing (app → version; nil: none).
func (a *Assembly) Offered() map[string]string {
	if a.Plan == nil || len(a.Plan.Download) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, item := range a.Plan.Download {
		out[item.App] = item.Version
	}
	return out
}
