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
	"github.com/spf13/pflag"
)

func runStatus(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	if err := subFlags("status", g, args, func(fs *pflag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print as JSON")
	}); err != nil {
		return err
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	rep, err := a.ReadReport()
	if err != nil {
		return err
	}
	return printStatus(rep, asJSON, stdout)
}

func printStatus(rep *agent.Report, asJSON bool, stdout io.Writer) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if rep.RebuiltFromManifests != "" {
		fmt.Fprintf(stdout, "database unreadable (%s): shown from the slot manifests; the next check rebuilds it\n", rep.RebuiltFromManifests)
	}
	if rep.Status == "" {
		fmt.Fprintln(stdout, "nothing installed yet")
	} else {
		fmt.Fprintf(stdout, "slot %s, generation %d, %s since %s\n", rep.Slot, rep.Generation, rep.Status, rep.Since.Format(time.RFC3339))
		if rep.Status == "trial" {
			fmt.Fprintf(stdout, "  on trial: health not yet confirmed (%d restart(s) seen)\n", rep.Trials)
		}
		if rep.Previous != nil {
			fmt.Fprintf(stdout, "previous: slot %s, generation %d (ota-agent rollback)\n", rep.Previous.Slot, rep.Previous.Generation)
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
	if g := rep.Staged; g != nil {
		fmt.Fprintf(stdout, "staged: slot %s, generation %d, switches in the next install window (or ota-agent apply)\n", g.Slot, g.Generation)
	}
	if rep.InProgress != "" {
		fmt.Fprintf(stdout, "update in progress: %s (or interrupted there; the next check recovers)\n", rep.InProgress)
	}
	if c := rep.LastCheck; c != nil {
		fmt.Fprintf(stdout, "last check: %s at %s (%s)", c.Result, c.Time.Format(time.RFC3339), seconds(c.Seconds))
		if c.Error != "" {
			fmt.Fprintf(stdout, ": %s", c.Error)
		}
		fmt.Fprintln(stdout)
		printVia(stdout, c.Via)
		printRemovals(stdout, c.Removed, c.Unlisted)
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
	if v := rep.LastVerify; v != nil {
		if !v.Time.IsZero() {
			fmt.Fprintf(stdout, "last verify: slot %s generation %d at %s (%s): ", v.Slot, v.Generation, v.Time.Format(time.RFC3339), seconds(v.Seconds))
			if len(v.Problems) == 0 {
				fmt.Fprintln(stdout, "ok")
			} else {
				fmt.Fprintf(stdout, "found %s\n", strings.Join(v.Problems, "; "))
			}
		}
		for _, r := range v.Repaired {
			fmt.Fprintf(stdout, "repaired: %s\n", r)
		}
	}
	for _, app := range slices.Sorted(maps.Keys(rep.Damaged)) {
		fmt.Fprintf(stdout, "damaged: %s (%s): the next check fetches it again\n", app, rep.Damaged[app])
	}
	printTrust(stdout, rep.Trust)
	printHeld(stdout, rep)
	return nil
}

// printHeld names the releases this device refuses, and those phased rollouts defer.
func printHeld(stdout io.Writer, rep *agent.Report) {
	for _, md5 := range slices.Sorted(maps.Keys(rep.Refused)) {
		r := rep.Refused[md5]
		fmt.Fprintf(stdout, "refused: %s %s (md5 %s): %s (ota-agent retry %s)\n", r.App, r.Version, md5, r.Reason, r.App)
	}
	for _, md5 := range slices.Sorted(maps.Keys(rep.Deferred)) {
		fmt.Fprintln(stdout, deferral(rep.Deferred[md5]))
	}
}

// printRemovals names the apps a check removed, and those it kept although the answer left
// them out.
func printRemovals(w io.Writer, removed, unlisted []string) {
	if len(removed) > 0 {
		fmt.Fprintf(w, "  removed (no longer offered): %s\n", strings.Join(removed, ", "))
	}
	if len(unlisted) > 0 {
		fmt.Fprintf(w, "  kept, not in the server's answer: %s (an unsigned answer removes nothing; trust.allow_unsigned_removals)\n", strings.Join(unlisted, ", "))
	}
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

// printTrust is status's trust line (and STALE line), when keys are configured.
func printTrust(stdout io.Writer, t *agent.TrustReport) {
	if t == nil {
		return
	}
	fmt.Fprintf(stdout, "trust: key set v%d (%s), threshold %d", t.KeySetVersion, strings.Join(t.Keys, ","), t.Threshold)
	if t.Expires != nil {
		fmt.Fprintf(stdout, "; timestamp issued %s, expires %s", t.Issued.Format(time.RFC3339), t.Expires.Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	if t.Stale {
		fmt.Fprintf(stdout, "STALE: no fresh ota-timestamp.release since %s: %s\n", t.StaleSince.Format(time.RFC3339), t.Error)
	}
}

// printVia says how each app of the last update arrived.
func printVia(stdout io.Writer, via map[string]agent.Delivery) {
	for _, app := range slices.Sorted(maps.Keys(via)) {
		v := via[app]
		fmt.Fprintf(stdout, "  %s: %s, %d of %d bytes downloaded\n", app, v.Path, v.Downloaded, v.Size)
	}
}
