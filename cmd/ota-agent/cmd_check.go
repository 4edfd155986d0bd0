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
	if !o.once {
		return fmt.Errorf("%w: check needs --once (the daemon is `ota-agent run`)", errUsage)
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) && !o.json {
		a.Status = func(s string) { fmt.Fprintf(stderr, "\r\033[K%s", s) }
		defer fmt.Fprint(stderr, "\r\033[K")
	}
	res, err := a.Check(ctx, agent.CheckOptions{DryRun: o.dryRun})
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return err
	}
	printResult(stdout, res, o.dryRun)
	return err
}

func printResult(w io.Writer, res *agent.Result, dry bool) {
	switch {
	case dry && res.Plan != nil:
		fmt.Fprintf(w, "plan (dry run, nothing changed):\n%s", res.Plan)
		return
	case res.Result == agent.ResultFailed:
		fmt.Fprintf(w, "failed: %s\n", res.Error)
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
