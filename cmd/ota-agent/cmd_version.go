package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/ota-agent/ota-agent/agent"
)

func runVersion(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if err := subFlags("version", g, args, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ota-agent %s (%s/%s, %s)\n", agent.Version, runtime.GOOS, runtime.GOARCH, runtime.Version())
	return nil
}
