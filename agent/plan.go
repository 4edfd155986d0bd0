package agent

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Plan is the difference between the desired set (the server's answer) and the current set
// (slots + database): seed 002's desired → current → plan. Executing it twice changes
// nothing the second time.
type Plan struct {
	Download []PlanItem `json:"download"`
	Keep     []string   `json:"keep"`
	Remove   []string   `json:"remove"`
	Skip     []string   `json:"skip,omitempty"` // marked unchanged (304) but not installed: refused or unknown
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

func makePlan(d *packaging.Details, installed map[string]store.App) (*Plan, error) {
	p := &Plan{}
	for _, app := range d.Apps {
		e := d.Entries[app]
		if strings.HasPrefix(app, ".") {
			return nil, fmt.Errorf("%w: app name %q starts with a dot", ErrRejected, app)
		}
		switch _, have := installed[app]; {
		case e.StatusCode == 200:
			p.Download = append(p.Download, PlanItem{App: app, Version: e.LatestVersion, Size: e.Size})
		case have:
			p.Keep = append(p.Keep, app)
		default:
			p.Skip = append(p.Skip, app)
		}
	}
	for app := range installed {
		if _, ok := d.Entries[app]; !ok {
			p.Remove = append(p.Remove, app)
		}
	}
	sort.Strings(p.Keep)
	sort.Strings(p.Remove)
	return p, nil
}

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
