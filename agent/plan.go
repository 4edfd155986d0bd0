package agent

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Plan is the difference between the desired set (the server's answer) and the current set
// (slots + database): seed 002's desired → current → plan. Executing it twice changes
// nothing the second time. The device's own rules come first (planRules): the server cannot
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
}

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

// planRules are what the device decides whatever the server says.
type planRules struct {
	removeUnlisted bool                     // no trust keys, or trust.allow_unsigned_removals
	refused        map[string]store.Refusal // md5 → why: never installed again
	damaged        map[string]string        // app → what was wrong on disk: fetched again even when unchanged
}

// rules are the plan rules of this agent for the database's refusals and damage.
func (a *Agent) rules(db *store.DB, state *store.State) (planRules, error) {
	r := planRules{removeUnlisted: len(a.keys) == 0 || a.cfg.Trust.AllowUnsignedRemovals}
	var err error
	if r.refused, err = db.Refusals(); err != nil {
		return r, err
	}
	if state != nil {
		r.damaged = state.Damaged
	}
	return r, nil
}

// hold says why a release offered for app must not be installed ("" when it may): refused
// earlier, or the very bytes installed (an answer that ignored If-None-Match).
func (r planRules) hold(app, md5 string, installed map[string]store.App) string {
	if md5 == "" {
		return ""
	}
	if _, ok := r.refused[md5]; ok {
		return "refused"
	}
	if have, ok := installed[app]; ok && have.MD5 == md5 && r.damaged[app] == "" {
		return "installed"
	}
	return ""
}

func makePlan(d *packaging.Details, installed map[string]store.App, rules planRules) (*Plan, error) {
	p := &Plan{}
	for _, app := range d.Apps {
		e := d.Entries[app]
		if strings.HasPrefix(app, ".") {
			return nil, fmt.Errorf("%w: app name %q starts with a dot", ErrRejected, app)
		}
		_, have := installed[app]
		if e.StatusCode == 200 {
			if p.held(app, rules.hold(app, e.MD5, installed), have) {
				continue
			}
			p.Download = append(p.Download, PlanItem{App: app, Version: e.LatestVersion, Size: e.Size})
			continue
		}
		if have {
			p.Keep = append(p.Keep, app)
		} else {
			p.Skip = append(p.Skip, app)
		}
	}
	for app := range installed {
		if _, ok := d.Entries[app]; ok {
			continue
		}
		if rules.removeUnlisted {
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

// held files an offered release that must not be installed (why: hold's answer) and tells
// whether it did.
func (p *Plan) held(app, why string, have bool) bool {
	switch why {
	case "":
		return false
	case "refused":
		p.Refused = append(p.Refused, app)
	}
	if have {
		p.Keep = append(p.Keep, app)
	}
	return true
}

// nothingNote says why an answer with something in it changed nothing.
func (p *Plan) nothingNote() string {
	var why []string
	if len(p.Refused) > 0 {
		why = append(why, "offered again what this device refused ("+strings.Join(p.Refused, ", ")+")")
	}
	if len(p.Unlisted) > 0 {
		why = append(why, "left out "+strings.Join(p.Unlisted, ", ")+", kept: an unsigned answer removes nothing")
	}
	if len(why) == 0 {
		why = append(why, "sent what is installed")
	}
	return "the server " + strings.Join(why, "; ") + ": nothing switched"
}

// carried are the installed apps the new generation takes over unchanged.
func (p *Plan) carried() []string { return append(slices.Clone(p.Keep), p.Unlisted...) }

// String is the plan as `--dry-run` prints it.
func (p *Plan) String() string {
	var b strings.Builder
	for _, d := range p.Download {
		fmt.Fprintf(&b, "download %s %s", d.App, d.Version)
		if d.Size > 0 {
			fmt.Fprintf(&b, " (%s)", humanBytes(d.Size))
		}
		switch {
		case d.Via == DeliveryChunks:
			fmt.Fprintf(&b, " by chunk index (%s), fetching only the chunks it lacks", humanBytes(d.Patch))
		case d.Via != "":
			fmt.Fprintf(&b, " as a %s %s", humanBytes(d.Patch), d.Via)
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
		fmt.Fprintf(&b, "keep     %s (not in the answer; an unsigned answer removes nothing: trust.allow_unsigned_removals)\n", u)
	}
	for _, r := range p.Refused {
		fmt.Fprintf(&b, "refused  %s (offered again; refused earlier on this device: ota-agent retry %s)\n", r, r)
	}
	for _, s := range p.Skip {
		fmt.Fprintf(&b, "skip     %s (unchanged on the server but not installed here: refused earlier)\n", s)
	}
	if b.Len() == 0 {
		return "nothing to do\n"
	}
	return b.String()
}

func humanBytes(n int64) string {
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
