package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/store"
	"github.com/spf13/pflag"
)

// statusReport is what `status --json` prints.
type statusReport struct {
	Slot       string                   `json:"slot"`
	Generation int64                    `json:"generation"`
	Status     string                   `json:"status"`
	Trials     int                      `json:"trials,omitempty"`
	Since      time.Time                `json:"since"`
	Previous   *store.Reference         `json:"previous,omitempty"`
	Apps       map[string]store.App     `json:"apps"`
	LastCheck  *store.CheckRecord       `json:"last_check,omitempty"`
	Refused    map[string]store.Refusal `json:"refused,omitempty"`
	OS         *agent.OSStatus          `json:"os,omitempty"`
	Damaged    map[string]string        `json:"damaged,omitempty"`
	LastVerify *store.VerifyRecord      `json:"last_verify,omitempty"`
	// Rebuilt says the database could not be read and this was rebuilt from the manifests.
	Rebuilt string `json:"rebuilt_from_manifests,omitempty"`
}

func runStatus(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	if err := subFlags("status", g, args, func(fs *pflag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print as JSON")
	}); err != nil {
		return err
	}
	return readState(g, stderr, func(a *agent.Agent, db *store.DB) error { return printStatus(a, db, asJSON, stdout) })
}

func printStatus(a *agent.Agent, db *store.DB, asJSON bool, stdout io.Writer) error {
	rep := statusReport{Apps: map[string]store.App{}}
	s, err := db.State()
	if err != nil {
		return err
	}
	if s != nil {
		rep.Slot, rep.Generation, rep.Status, rep.Trials, rep.Since, rep.Previous, rep.Apps = s.Slot, s.N, s.Status, s.Trials, s.Since, s.Previous, s.Apps
		rep.Damaged = s.Damaged
	}
	if db.Rebuilt {
		rep.Rebuilt = db.Damage
	}
	if rep.LastVerify, err = db.LastVerify(); err != nil {
		return err
	}
	if rep.LastCheck, err = db.LastCheck(); err != nil {
		return err
	}
	if rep.Refused, err = db.Refusals(); err != nil {
		return err
	}
	rep.OS = a.OSStatus(db)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if rep.Rebuilt != "" {
		fmt.Fprintf(stdout, "database unreadable (%s): shown from the slot manifests; the next check rebuilds it\n", rep.Rebuilt)
	}
	if s == nil {
		fmt.Fprintln(stdout, "nothing installed yet")
	} else {
		fmt.Fprintf(stdout, "slot %s, generation %d, %s since %s\n", rep.Slot, rep.Generation, rep.Status, rep.Since.Format(time.RFC3339))
		if rep.Status == store.StatusTrial {
			fmt.Fprintf(stdout, "  on trial: health not yet confirmed (%d restart(s) seen)\n", rep.Trials)
		}
		if rep.Previous != nil {
			fmt.Fprintf(stdout, "previous: slot %s, generation %d (ota-agent rollback)\n", rep.Previous.Slot, rep.Previous.N)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rep.Apps)) {
		x := rep.Apps[name]
		signed := "unsigned"
		if x.Signed {
			signed = fmt.Sprintf("serial %d", x.Serial)
		}
		fmt.Fprintf(stdout, "  %-16s %-10s %10d bytes  md5 %s  sha256 %s  %s\n", name, x.Version, x.Size, x.MD5, x.SHA256, signed)
	}
	if c := rep.LastCheck; c != nil {
		fmt.Fprintf(stdout, "last check: %s at %s (%v)", c.Result, c.Time.Format(time.RFC3339), c.Duration.Round(time.Millisecond))
		if c.Error != "" {
			fmt.Fprintf(stdout, ": %s", c.Error)
		}
		fmt.Fprintln(stdout)
	}
	if o := rep.OS; o != nil {
		fmt.Fprintf(stdout, "OS partitions: booted %s, committed %s", orNone(o.Booted), orNone(o.Committed))
		if o.Try != "" {
			fmt.Fprintf(stdout, ", marked to try %s", o.Try)
		}
		if o.State != nil && o.State.Try != "" {
			fmt.Fprintf(stdout, " (%s %s written to slot %s)", o.State.App, o.State.Release.Version, o.State.Try)
		}
		if o.Error != "" {
			fmt.Fprintf(stdout, " (environment: %s)", o.Error)
		}
		fmt.Fprintln(stdout)
	}
	if v := rep.LastVerify; v != nil && !v.Time.IsZero() {
		fmt.Fprintf(stdout, "last verify: slot %s generation %d at %s (%v): ", v.Slot, v.N, v.Time.Format(time.RFC3339), v.Duration.Round(time.Millisecond))
		if len(v.Problems) == 0 {
			fmt.Fprintln(stdout, "ok")
		} else {
			fmt.Fprintf(stdout, "found %s\n", strings.Join(v.Problems, "; "))
		}
	}
	if v := rep.LastVerify; v != nil {
		for _, r := range v.Repaired {
			fmt.Fprintf(stdout, "repaired: %s\n", r)
		}
	}
	for _, app := range slices.Sorted(maps.Keys(rep.Damaged)) {
		fmt.Fprintf(stdout, "damaged: %s (%s): the next check fetches it again\n", app, rep.Damaged[app])
	}
	for md5, r := range rep.Refused {
		fmt.Fprintf(stdout, "refused: %s %s (md5 %s): %s\n", r.App, r.Version, md5, r.Reason)
	}
	return nil
}
