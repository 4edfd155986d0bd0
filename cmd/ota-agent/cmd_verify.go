package main

import (
	"context"
	"fmt"
	"io"
)

func runVerify(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("verify", g, args, nil); err != nil {
		return err
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	lines, note, err := a.VerifyInstalled()
	if note != "" {
		fmt.Fprintf(stderr, "note: %s\n", note)
	}
	if err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintf(stdout, "ok: %s\n", l)
	}
	return nil
}
