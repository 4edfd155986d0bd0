package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/store"
)

// runMarkGood commits the OS slot the device booted into after an update.
func runMarkGood(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("mark-good", g, args, nil); err != nil {
		return err
	}
	return withState(g, stderr, func(a *agent.Agent, db *store.DB) error {
		if err := a.MarkGood(db); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "OS slot %s committed\n", a.OSStatus(db).Committed)
		return nil
	})
}
