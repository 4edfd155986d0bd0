package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

type checkOptions struct {
	once, json, dryRun bool
}

func runCheck(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var o checkOptions
	if err := subFlags("check", g, args, func(fs *pflag.FlagSet) {
		fs.BoolVar(&o.once, "once", false, "run one check and exit")
		fs.BoolVar(&o.json, "json", false, "print the result as JSON")
		fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan; download and change nothing")
	}); err != nil {
		return err
	}
	// The outcome is reported once: as JSON with --json (configuration errors too), else as
	// the result line; main adds nothing but the exit status.
	fail := func(err error) error {
		if o.json {
			writeJSON(stdout, &agent.Result{Result: agent.ResultFailed, Error: err.Error(), Apps: map[string]agent.AppResult{}})
			return reported{err}
		}
		return err
	}
	if !o.once {
		return fail(fmt.Errorf("%w: check needs --once (the daemon is `ota-agent run`)", errUsage))
	}
	a, err := load(g, stderr)
	if err != nil {
		return fail(err)
	}
	tty := ttyOf(stderr)
	if tty != nil && !o.json {
		a.Status = tty.status
	}
	res, err := a.Check(ctx, agent.CheckOptions{DryRun: o.dryRun})
	if tty != nil {
		tty.status("") // the progress line goes before the result is printed
	}
	switch {
	case o.json:
		writeJSON(stdout, res)
		if err != nil {
			return reported{err}
		}
	case err == nil:
		printResult(stdout, res, o.dryRun)
	}
	return err // main prints it, once, on stderr
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func printResult(w io.Writer, res *agent.Result, dry bool) {
	if dry && res.Plan != nil {
		fmt.Fprintf(w, "plan (dry run, nothing changed):\n%s", res.Plan)
		return
	}
	fmt.Fprintln(w, headline(res))
	for _, name := range slices.Sorted(maps.Keys(res.Apps)) {
		x := res.Apps[name]
		what := "unchanged"
		if x.Changed {
			what = "installed"
		}
		fmt.Fprintf(w, "  %-16s %-10s %s  md5 %s\n", name, x.Version, what, x.MD5)
	}
	printRemovals(w, res.Removed, res.Unlisted)
	printRefused(w, res.Refused)
	for _, d := range res.Deferred {
		fmt.Fprintf(w, "  %s\n", deferral(d))
	}
}

// deferral says why a release waits, and until when.
func deferral(d agent.Deferral) string {
	if d.Halted {
		return fmt.Sprintf("deferred: %s %s (%s): its phased rollout is halted at %.4g%% of the fleet; this device waits for a resume", d.App, d.Version, d.Channel, float64(d.Level)/1e4)
	}
	return fmt.Sprintf("deferred: %s %s (%s): its phased rollout is at %.4g%% of the fleet; this device's turn is %s", d.App, d.Version, d.Channel, float64(d.Level)/1e4, d.Turn.Local().Format("Mon 2006-01-02 15:04 MST"))
}

// headline is the result's first line: what really happened.
func headline(res *agent.Result) string {
	dl := fmt.Sprintf("%d bytes downloaded", res.Bytes)
	switch res.Result {
	case agent.ResultUpToDate:
		why := "the server answered 304 Not Modified"
		if res.Note != "" {
			why = res.Note
		}
		return fmt.Sprintf("up-to-date: %s (slot %s, %d apps)", why, orNone(res.Slot), len(res.Apps))
	case agent.ResultStaged:
		when := "in the next install window"
		if res.StagedUntil != nil {
			when = "at " + res.StagedUntil.Format("Mon 2006-01-02 15:04 MST")
		}
		return fmt.Sprintf("staged: installed into slot %s, switches %s (install.windows), or now with ota-agent apply (%s)", res.Slot, when, dl)
	}
	var did []string
	if res.OSSlot != "" {
		did = append(did, fmt.Sprintf("OS image written to partition slot %s, tried at the next boot", res.OSSlot))
	}
	if res.Switched || len(did) == 0 {
		did = append(did, fmt.Sprintf("installed into slot %s and switched", orNone(res.Slot)))
	}
	return fmt.Sprintf("updated: %s (%s)", strings.Join(did, "; apps "), dl)
}

// printRefused names every release this device refuses, and how to clear a refusal.
func printRefused(w io.Writer, refused map[string]agent.Refusal) {
	for _, md5 := range slices.Sorted(maps.Keys(refused)) {
		r := refused[md5]
		fmt.Fprintf(w, "  refused: %s %s (md5 %s): %s; ota-agent retry %s clears it\n", r.App, r.Version, md5, r.Reason, r.App)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// reported wraps an error whose outcome the command has already printed.
type reported struct{ error }

func (r reported) Unwrap() error { return r.error }
