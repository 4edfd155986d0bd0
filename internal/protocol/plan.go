package protocol

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Plan is the difference between the desired set (the server's answer) and the current set
// (slots + database): seed 002's desired → current → plan. Executing it twice changes
// nothing the second time. The device's own rules come first (Rules): the server cannot
// make it install a release it refused, re-install what it has, or (with trust keys) remove
// an app by leaving it out of an unsigned answer.
type Plan struct {
	Download []PlanItem `json:"download,omitempty"`
	Keep     []string   `json:"keep,omitempty"`
	Remove   []string   `json:"remove,omitempty"`
	Skip     []string   `json:"skip,omitempty"` // marked unchanged (304) but not installed: refused or unknown
	// Unlisted are installed apps the answer leaves out, kept: an unsigned answer removes
	// nothing while trust.keys are set (trust.allow_unsigned_removals).
	Unlisted []string `json:"unlisted,omitempty"`
	// Refused are releases offered again that this device refused (`ota-agent retry APP`).
	Refused []string `json:"refused,omitempty"`
	// Deferred are releases a signed phased rollout keeps from this device for now.
	Deferred []string `json:"deferred,omitempty"`
}

// How an app arrives (a plan's dry run names it, a check's result says it).
const (
	DeliveryPatch   = "patch"   // a patch from the installed file (or a block patch)
	DeliveryChunks  = "chunks"  // what the device held, plus Range fetches of the rest
	DeliveryFull    = "full"    // the whole file from the firmware CDN
	DeliveryPayload = "payload" // inside the full payload
)

// PlanItem is one binary to fetch.
type PlanItem struct {
	App     string `json:"app"`
	Version string `json:"version"`
	Size    int64  `json:"size,omitempty"`
	Via     string `json:"via,omitempty"`   // --dry-run: the delta a check would use (patch, block patch, chunks)
	Patch   int64  `json:"patch,omitempty"` // ... and its size (the patch, or the chunk index)
}

// Member is the tar member / object name of the item.
func (p PlanItem) Member() string { return p.App + "_" + p.Version }

// Rules are what the device decides whatever the server says.
type Rules struct {
	RemoveUnlisted bool                      // no trust keys, or trust.allow_unsigned_removals
	Refused        map[string]store.Refusal  // md5 → why: never installed again
	Damaged        map[string]string         // app → what was wrong on disk: fetched again even when unchanged
	Deferred       map[string]store.Deferral // md5 → a phased rollout's turn not come (its MD5 went out in If-None-Match)
}

// Hold says why a release offered for app must not be installed ("" when it may): refused
// earlier, or the very bytes installed (an answer that ignored If-None-Match).
func (r Rules) Hold(app, md5 string, installed map[string]store.App) string {
	if md5 == "" {
		return ""
	}
	if _, ok := r.Refused[md5]; ok {
		return "refused"
	}
	if _, ok := r.Deferred[md5]; ok {
		return "deferred"
	}
	if have, ok := installed[app]; ok && have.MD5 == md5 && r.Damaged[app] == "" {
		return "installed"
	}
	return ""
}

func MakePlan(d *packaging.Details, installed map[string]store.App, rules Rules) (*Plan, error) {
	p := &Plan{}
	for _, app := range d.Apps {
		e := d.Entries[app]
		if strings.HasPrefix(app, ".") {
			return nil, fmt.Errorf("%w: app name %q starts with a dot", fault.ErrRejected, app)
		}
		_, have := installed[app]
		if e.StatusCode == 200 {
			if p.Held(app, rules.Hold(app, e.MD5, installed), have) {
				continue
			}
			p.Download = append(p.Download, PlanItem{App: app, Version: e.LatestVersion, Size: e.Size})
			continue
		}
		switch {
		case have:
			p.Keep = append(p.Keep, app)
		case rules.deferred(app):
			p.Deferred = append(p.Deferred, app) // left out by its deferred MD5
		default:
			p.Skip = append(p.Skip, app)
		}
	}
	for app := range installed {
		if _, ok := d.Entries[app]; ok {
			continue
		}
		if rules.RemoveUnlisted {
			p.Remove = append(p.Remove, app)
		} else {
			p.Unlisted = append(p.Unlisted, app)
		}
	}
	sort.Strings(p.Keep)
	sort.Strings(p.Remove)
	sort.Strings(p.Unlisted)
	return p, nil
}

// deferred says whether a release of app waits for its turn in a phased rollout.
func (r Rules) deferred(app string) bool {
	for _, d := range r.Deferred {
		if d.App == app {
			return true
		}
	}
	return false
}

// Held files an offered release that must not be installed (why: Hold's answer) and tells
// whether it did.
func (p *Plan) Held(app, why string, have bool) bool {
	switch why {
	case "":
		return false
	case "refused":
		p.Refused = append(p.Refused, app)
	case "deferred":
		p.Deferred = append(p.Deferred, app)
	}
	if have {
		p.Keep = append(p.Keep, app)
	}
	return true
}

// NothingNote says why an answer with something in it changed nothing.
func (p *Plan) NothingNote() string {
	var why []string
	if len(p.Refused) > 0 {
		why = append(why, "offered again what this device refused ("+strings.Join(p.Refused, ", ")+")")
	}
	if len(p.Deferred) > 0 {
		why = append(why, "offered "+strings.Join(p.Deferred, ", ")+" in a phased rollout whose turn for this device has not come")
	}
	if len(p.Unlisted) > 0 {
		why = append(why, "left out "+strings.Join(p.Unlisted, ", ")+", kept: an unsigned Answer removes nothing")
	}
	if len(why) == 0 {
		why = append(why, "sent what is installed")
	}
	return "the server " + strings.Join(why, "; ") + ": nothing switched"
}

// Carried are the installed apps the new generation takes over unchanged.
func (p *Plan) Carried() []string { return append(slices.Clone(p.Keep), p.Unlisted...) }

// String is the plan as `--dry-run` prints it.
func (p *Plan) String() string {
	var b strings.Builder
	for _, d := range p.Download {
		fmt.Fprintf(&b, "download %s %s", d.App, d.Version)
		if d.Size > 0 {
			fmt.Fprintf(&b, " (%s)", HumanBytes(d.Size))
		}
		switch {
		case d.Via == DeliveryChunks:
			fmt.Fprintf(&b, " by chunk index (%s), fetching only the chunks it lacks", HumanBytes(d.Patch))
		case d.Via != "":
			fmt.Fprintf(&b, " as a %s %s", HumanBytes(d.Patch), d.Via)
		}
		b.WriteByte('\n')
	}
	for _, k := range p.Keep {
		fmt.Fprintf(&b, "keep     %s\n", k)
	}
	for _, r := range p.Remove {
		fmt.Fprintf(&b, "remove   %s\n", r)
	}
	for _, u := range p.Unlisted {
		fmt.Fprintf(&b, "keep     %s (not in the Answer; an unsigned Answer removes nothing: trust.allow_unsigned_removals)\n", u)
	}
	for _, r := range p.Refused {
		fmt.Fprintf(&b, "refused  %s (offered again; refused earlier on this device: ota-agent retry %s)\n", r, r)
	}
	for _, d := range p.Deferred {
		fmt.Fprintf(&b, "defer    %s (a phased rollout: this device's turn has not come)\n", d)
	}
	for _, s := range p.Skip {
		fmt.Fprintf(&b, "skip     %s (unchanged on the server but not installed here: refused earlier)\n", s)
	}
	if b.Len() == 0 {
		return "nothing to do\n"
	}
	return b.String()
}

func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// SameMembers: the set of files must equal what package_details.json promises (every entry
// with status 200, whether or not the plan installs it).
func SameMembers(d *packaging.Details, got map[string]packaging.Digests) error {
	want := map[string]bool{}
	for _, app := range d.Apps {
		e := d.Entries[app]
		if e.StatusCode != 200 {
			continue
		}
		m := PlanItem{App: app, Version: e.LatestVersion}.Member()
		want[m] = true
		if _, ok := got[m]; !ok {
			return fmt.Errorf("%w: package_details.json lists %s %s with status 200 but the payload has no member %s", fault.ErrRejected, app, e.LatestVersion, m)
		}
	}
	for m := range got {
		if !want[m] {
			return fmt.Errorf("%w: payload member %s is not listed with status 200 in package_details.json (two rows of one app selected? check device attributes)", fault.ErrRejected, m)
		}
	}
	return nil
}
