package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// runInstall installs from a file or directory instead of the server (a site without
// network, a USB stick).
func runInstall(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	var path []string
	if err := subFlagsArgs("install", g, args, func(fs *pflag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	}, &path); err != nil {
		return err
	}
	if len(path) != 1 {
		return fmt.Errorf("%w: install takes one FILE.tar.gz or DIR (see ota-agent install --help)", errUsage)
	}
	a, err := load(g, stderr)
	if err != nil {
		return err
	}
	res, err := a.InstallFrom(ctx, path[0])
	switch {
	case asJSON:
		writeJSON(stdout, res)
		if err != nil {
			return reported{err}
		}
	case err == nil:
		printResult(stdout, res, false)
	}
	return err
}
