package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/store"
)

func runRollback(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("rollback", g, args, nil); err != nil {
		return err
	}
	return withState(g, stderr, func(a *agent.Agent, db *store.DB) error {
		if err := a.Rollback(ctx, db, "rolled back by hand"); err != nil {
			return err
		}
		s, err := db.State()
		if err != nil {
			return err
		}
		if s == nil {
			fmt.Fprintln(stdout, "rolled back: nothing is installed now")
			return nil
		}
		fmt.Fprintf(stdout, "rolled back: slot %s, generation %d\n", s.Slot, s.N)
		return nil
	})
}
