package strace

import (
	"path/filepath"
	"strings"
)

// Verdict says how one installed file became visible.
type Verdict struct {
	Durable bool   // every byte was fsync'd (or sync'd) before a reader could see them
	How     string // in words, for a table
	DirSync bool   // the directory entry that showed it was fsync'd afterwards
}

// Judge follows file back through the renames and links that put it where it is and finds
// the call that showed it to readers: the rename of switchPath when one publishes it (the
// agent's `current`), else the last rename or link onto the file or a directory above it,
// else the open that created it in place.
func Judge(ev []Event, file, switchPath string) Verdict {
	names := aliases(ev, file)
	vis, inPlace := -1, false
	for i, e := range ev {
		if switchPath != "" {
			if e.Call == "rename" && e.Path == switchPath {
				vis = i
			}
			continue
		}
		if (e.Call == "rename" || e.Call == "link") && (e.Path == file || strings.HasPrefix(file, e.Path+"/")) {
			vis, inPlace = i, false
		}
		if vis < 0 && e.Call == "create" && e.Path == file {
			vis, inPlace = i, true
		}
	}
	if vis < 0 {
		return Verdict{How: "not installed under strace"}
	}
	synced, upTo := false, ev[:vis]
	if inPlace {
		upTo = ev[vis:] // readers saw it from the open on; was it ever made durable?
	}
	for _, e := range upTo {
		if e.Call == "sync" || e.Call == "fsync" && names[e.Path] {
			synced = true
		}
	}
	dir := filepath.Dir(file)
	if switchPath != "" {
		dir = filepath.Dir(switchPath)
	} else if !inPlace {
		dir = filepath.Dir(ev[vis].Path)
	}
	v := Verdict{Durable: synced && !inPlace}
	for _, e := range ev[vis:] {
		if e.Call == "sync" || e.Call == "fsync" && e.Path == dir {
			v.DirSync = true
		}
	}
	switch {
	case inPlace && synced:
		v.How = "written in place under its final name, fsync'd after"
	case inPlace:
		v.How = "written in place under its final name, never fsync'd"
	case synced:
		v.How = "fsync'd, then renamed into place"
	default:
		v.How = "renamed into place without an fsync"
	}
	return v
}

// aliases is every name file had on its way: the old names of renames and links onto it or
// onto a directory above it, followed back.
func aliases(ev []Event, file string) map[string]bool {
	names := map[string]bool{file: true}
	for i := len(ev) - 1; i >= 0; i-- {
		e := ev[i]
		if e.Call != "rename" && e.Call != "link" {
			continue
		}
		for n := range names {
			if n == e.Path {
				names[e.From] = true
			} else if rest, ok := strings.CutPrefix(n, e.Path+"/"); ok {
				names[filepath.Join(e.From, rest)] = true
			}
		}
	}
	return names
}
