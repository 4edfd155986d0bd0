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
	if err := a.MarkGood(db); err != nil {
		return err
	}
	st := a.OSStatus(db)
	fmt.Fprintf(stdout, "OS slot %s committed\n", st.Committed)
	return nil
}
