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
		if db.Rebuilt {
			fmt.Fprintf(stderr, "note: the database is unreadable (%s); verifying against the slot manifests (the next check rebuilds it)\n", db.Damage)
		}
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
		line, err := a.VerifyActive(s)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ok: %s\n", line)
		return nil
	})
}
