package main

import (
	"context"
	"fmt"
	"io"
)

func runRollback(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("rollback", g, args, nil); err != nil {
		return err
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	line, err := a.RollbackByHand(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, line)
	return nil
}
