package delivery

// Clean removes partial downloads the plan no longer needs.
func (a *Fetcher) Clean(plan *Plan) error {
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
