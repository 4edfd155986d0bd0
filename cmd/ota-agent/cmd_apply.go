package main

import (
	"context"
	"fmt"
	"io"
)

// runApply switches a staged generation now, install window or not.
func runApply(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("apply", g, args, nil); err != nil {
		return err
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	line, err := a.Apply(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, line)
	return nil
}
