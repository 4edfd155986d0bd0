package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// The fleet view (docs/fleet.md): per release, what the devices reported.

// fleetEvent is the part of a device report's event the view reads.
type fleetEvent struct {
	Kind   string            `json:"kind"`
	Time   time.Time         `json:"time"`
	Apps   map[string]string `json:"apps"`
	Class  string            `json:"error_class"`
	Reason string            `json:"reason"`
}

// Release is one line of the view.
type Release struct {
	App        string         `json:"app"`
	Version    string         `json:"version"`
	Offered    int            `json:"offered"`   // devices that reported anything about it
	Deferred   int            `json:"deferred"`  // ... whose last word on it is a phased rollout's deferral
	Installed  int            `json:"installed"` // ... running it now (their latest install names it)
	Failed     map[string]int `json:"failed"`    // devices whose check failed installing it, by error class
	RolledBack int            `json:"rolled_back"`
	Refused    int            `json:"refused"`
	LastSeen   time.Time      `json:"last_seen"`
}

// Fleet is the whole view.
type Fleet struct {
	Releases []Release `json:"releases"`
	Devices  int       `json:"devices"`
	Events   int       `json:"events"`
	Dropped  int64     `json:"dropped"` // events devices dropped for room while the receiver was away
}

func fleetFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	url := fs.String("url", "", "the receiver's reports URL (report.url of the devices; ota-testserver: <base>/reports)")
	asJSON := fs.Bool("json", false, "print the view as JSON")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if *url == "" || fs.NArg() > 0 {
			return usageErr("fleet", "--url URL is required, and nothing else")
		}
		resp, err := http.Get(*url)
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		defer resp.Body.Close()
		var v struct {
			Events []struct {
				Device string          `json:"device"`
				Event  json.RawMessage `json:"event"`
			} `json:"events"`
			Dropped map[string]int64 `json:"dropped"`
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("fleet: %s answered %s", *url, resp.Status)
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&v); err != nil {
			return fmt.Errorf("fleet: %s did not answer a reports view: %w", *url, err)
		}
		byDevice := map[string][]fleetEvent{}
		for _, s := range v.Events {
			var e fleetEvent
			if json.Unmarshal(s.Event, &e) == nil {
				byDevice[s.Device] = append(byDevice[s.Device], e)
			}
		}
		f := view(byDevice)
		f.Events = len(v.Events)
		for _, n := range v.Dropped {
			f.Dropped += n
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(f)
		}
		printFleet(stdout, f)
		return nil
	}
}

// view folds each device's events, in time order, into per-release counts.
func view(byDevice map[string][]fleetEvent) Fleet {
	type key struct{ app, version string }
	rel := map[key]*Release{}
	get := func(app, version string) *Release {
		k := key{app, version}
		if rel[k] == nil {
			rel[k] = &Release{App: app, Version: version, Failed: map[string]int{}}
		}
		return rel[k]
	}
	for _, evs := range byDevice {
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
		last := map[key]string{}    // this device's last word on each release
		running := map[string]key{} // app → what its latest install says it runs
		failed := map[key]string{}
		for _, e := range evs {
			for app, version := range e.Apps {
				k := key{app, version}
				r := get(app, version)
				if e.Time.After(r.LastSeen) {
					r.LastSeen = e.Time
				}
				switch e.Kind {
				case "installed":
					running[app] = k
				case "failed":
					failed[k] = e.Class
				}
				last[k] = e.Kind
			}
		}
		for k, kind := range last {
			r := get(k.app, k.version)
			r.Offered++
			switch {
			case running[k.app] == k:
				r.Installed++
			case kind == "deferred":
				r.Deferred++
			case kind == "rolled_back":
				r.RolledBack++
			case kind == "refused":
				r.Refused++
			}
			if class, ok := failed[k]; ok && running[k.app] != k {
				r.Failed[class]++
			}
		}
	}
	f := Fleet{Devices: len(byDevice), Releases: []Release{}}
	for _, r := range rel {
		f.Releases = append(f.Releases, *r)
	}
	sort.Slice(f.Releases, func(i, j int) bool {
		a, b := f.Releases[i], f.Releases[j]
		return a.App < b.App || a.App == b.App && a.Version < b.Version
	})
	return f
}

func printFleet(w io.Writer, f Fleet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tOFFERED\tDEFERRED\tINSTALLED\tFAILED\tROLLED BACK\tREFUSED\tLAST SEEN")
	for _, r := range f.Releases {
		var failed []string
		n := 0
		for class, c := range r.Failed {
			failed, n = append(failed, fmt.Sprintf("%s %d", class, c)), n+c
		}
		sort.Strings(failed)
		fails := fmt.Sprint(n)
		if n > 0 {
			fails += " (" + strings.Join(failed, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s %s\t%d\t%d\t%d\t%s\t%d\t%d\t%s\n", r.App, r.Version, r.Offered, r.Deferred, r.Installed, fails, r.RolledBack, r.Refused, r.LastSeen.UTC().Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d devices reporting, %d events, %d dropped by devices for room\n", f.Devices, f.Events, f.Dropped)
}
