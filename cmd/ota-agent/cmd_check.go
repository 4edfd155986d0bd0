package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

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
	if tty := ttyOf(stderr); tty != nil && !o.json {
		a.Status = tty.status
		defer tty.status("")
	}
	res, err := a.Check(ctx, agent.CheckOptions{DryRun: o.dryRun})
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
	switch {
	case dry && res.Plan != nil:
		fmt.Fprintf(w, "plan (dry run, nothing changed):\n%s", res.Plan)
		return
	case res.Result == agent.ResultUpToDate:
		fmt.Fprintf(w, "up-to-date: the server answered 304 Not Modified (slot %s, %d apps)\n", orNone(res.Slot), len(res.Apps))
	default:
		fmt.Fprintf(w, "updated: installed into slot %s and switched (%d bytes downloaded)\n", res.Slot, res.Bytes)
	}
	for _, name := range slices.Sorted(maps.Keys(res.Apps)) {
		x := res.Apps[name]
		what := "unchanged"
		if x.Changed {
			what = "installed"
		}
		fmt.Fprintf(w, "  %-16s %-10s %s  md5 %s\n", name, x.Version, what, x.MD5)
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
