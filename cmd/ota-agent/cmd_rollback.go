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
	unlock, err := a.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	db, err := a.OpenDB()
	if err != nil {
		return err
	}
	defer db.Close()
	if err := a.Rollback(ctx, db, "rolled back by hand"); err != nil {
		return err
	}
	s, err := db.State()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rolled back: slot %s, generation %d\n", s.Slot, s.N)
	return nil
}
