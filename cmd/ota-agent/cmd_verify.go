package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/store"
)

func runVerify(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("verify", g, args, nil); err != nil {
		return err
	}
	return readState(g, stderr, func(a *agent.Agent, db *store.DB) error {
		osLine, err := a.VerifyOS(db)
		if err != nil {
			return err
		}
		if osLine != "" {
			fmt.Fprintf(stdout, "ok: %s\n", osLine)
		}
		s, err := db.State()
		if err != nil {
			return err
		}
		if s == nil {
			if osLine != "" {
				return nil
			}
			return errors.New("nothing installed: no generation in the database")
		}
		active, err := a.Slots().Active()
		if err != nil {
			return err
		}
		if active != s.Slot {
			return fmt.Errorf("current points to slot %s but the database says slot %s", active, s.Slot)
		}
		if err := a.Slots().Verify(active, s.Apps); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ok: slot %s, generation %d, %d apps match the database\n", s.Slot, s.N, len(s.Apps))
		return nil
	})
}
