package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/spf13/pflag"
)

func runRollback(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var force bool
	if err := subFlags("rollback", g, args, func(fs *pflag.FlagSet) {
		fs.BoolVar(&force, "force", false, "roll back the first generation too (the device then runs nothing)")
	}); err != nil {
		return err
	}
	return runLine("rollback", g, nil, stdout, stderr, func(a *agent.Agent) (string, error) { return a.RollbackByHand(ctx, force) })
}

// runRetry ends the refusals of an app's releases, so the next check may install them.
func runRetry(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var rest []string
	if err := subFlagsArgs("retry", g, args, nil, &rest); err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: retry needs one APP (ota-agent status lists the refused releases)", errUsage)
	}
	return runLine("retry", g, nil, stdout, stderr, func(a *agent.Agent) (string, error) { return a.Retry(ctx, rest[0]) })
}

// runMarkGood commits the OS slot the device booted into after an update.
func runMarkGood(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	return runLine("mark-good", g, args, stdout, stderr, func(a *agent.Agent) (string, error) { return a.MarkGoodNow(ctx) })
}

// runApply switches a staged generation now, install window or not.
func runApply(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	return runLine("apply", g, args, stdout, stderr, func(a *agent.Agent) (string, error) { return a.Apply(ctx) })
}

// runLine is a command without flags of its own whose outcome is one line.
func runLine(name string, g *globals, args []string, stdout, stderr io.Writer, do func(*agent.Agent) (string, error)) error {
	if err := subFlags(name, g, args, nil); err != nil {
		return err
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	line, err := do(a)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, line)
	return nil
}
