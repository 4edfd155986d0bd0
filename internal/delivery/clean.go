package delivery

import (
	"slices"

	"github.com/ota-agent/ota-agent/internal/osimage"
)

// Clean removes partial downloads the plan no longer needs, and the checkpoint of an OS
// image streamed into its partition when the plan does not fetch it (PayloadResume asks
// for it).
func (a *Fetcher) Clean(plan *Plan) error {
	for _, m := range osimage.Checkpoints(a.db) {
		if !slices.ContainsFunc(plan.Download, func(d PlanItem) bool { return d.Member() == m }) {
			a.dropDownload(m)
		}
	}
	root, err := a.slots.Root()
	if err != nil {
		return err
	}
	if fi, err := root.Lstat("downloads"); err != nil || !fi.IsDir() {
		return nil // tidied at open; a link here is never listed
	}
	d, err := root.Open("downloads")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		keep := false
		for _, d := range plan.Download {
			keep = keep || patchMember(n, d.Member())
		}
		if !keep {
			root.RemoveAll("downloads/" + n)
		}
	}
	return err
}
