package main

import (
	"context"
	"fmt"
	"io"
)

// runMarkGood commits the OS slot the device booted into after an update.
func runMarkGood(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("mark-good", g, args, nil); err != nil {
		return err
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	line, err := a.MarkGoodNow()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, line)
	return nil
}
