package main

import (
	"context"
	"io"

	"github.com/ota-agent/ota-agent/agent"
)

func runDaemon(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("run", g, args, nil); err != nil {
		return err
	}
	return agent.RunDaemon(ctx, agent.DaemonOptions{
		Load: func() (*agent.Agent, error) { return load(g, stderr) },
	})
}
