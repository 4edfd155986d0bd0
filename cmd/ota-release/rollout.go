package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/packaging/ramp"
	"github.com/spf13/pflag"
)

// rampFlags reads sign's --ramp and --start into the signed form ("" without --ramp).
func rampFlags(spec, start string, v1 bool) (string, error) {
	if spec == "" {
		if start != "" {
			return "", usageErr("sign", "--start needs --ramp")
		}
		return "", nil
	}
	if v1 {
		return "", usageErr("sign", "--ramp needs v2 statements (drop --v1)")
	}
	at, err := when(start)
	if err != nil {
		return "", usageErr("sign", "--start %q: %v", start, err)
	}
	r, err := ramp.Spec(spec, at)
	if err != nil {
		return "", usageErr("sign", "--ramp: %v", err)
	}
	return r.String(), nil
}

// when reads a time given as RFC 3339 or unix seconds ("" is now).
func when(s string) (time.Time, error) {
	if s == "" {
		return time.Now(), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("want RFC 3339 (2026-12-24T08:00:00Z) or unix seconds")
	}
	return t, nil
}

// describeRollout is a signed row's rollout, for what sign and rollout print.
func describeRollout(c packaging.Class) string {
	out := ""
	if r, err := ramp.Parse(c.Ramp); err == nil {
		out = ", ramp " + r.Describe()
	}
	if c.Halted != 0 {
		out += ", halted at " + time.Unix(c.Halted, 0).UTC().Format(time.RFC3339)
	}
	return out
}

func rolloutFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	key := fs.StringSlice("key", nil, "Ed25519 private key (PEM); repeat (or comma-separate) for a threshold")
	dir := fs.String("catalog", "", "catalog directory")
	at := fs.String("at", "", "the time of the halt or resume: RFC 3339 or unix seconds (default: now)")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if fs.NArg() != 4 || fs.Arg(0) != "halt" && fs.Arg(0) != "resume" {
			return usageErr("rollout", "want halt|resume APP VERSION CHANNEL")
		}
		if len(*key) == 0 || *dir == "" {
			return usageErr("rollout", "--key and --catalog are required")
		}
		t, err := when(*at)
		if err != nil {
			return usageErr("rollout", "--at %q: %v", *at, err)
		}
		pems, c, err := signing(*key, *dir)
		if err != nil {
			return err
		}
		r, err := c.Rollout(fs.Arg(1), fs.Arg(2), fs.Arg(3), fs.Arg(0), t, pems...)
		if err != nil {
			return fmt.Errorf("rollout %s: %w", fs.Arg(0), err)
		}
		fmt.Fprintf(stdout, "%s %s (%s) serial %d%s\n", r.App, r.Version, r.Env, r.Serial, describeRollout(r.Class))
		fmt.Fprintf(stdout, "signed again: %s.release; publish the catalog (ota-release publish) for devices to see it\n", r.Key())
		return nil
	}
}

// signing reads the private keys and the catalog a signing command works on.
func signing(keys []string, dir string) ([][]byte, *catalog.Catalog, error) {
	pems, err := readFiles(keys)
	if err != nil {
		return nil, nil, err
	}
	c, err := catalog.Load(dir)
	return pems, c, err
}
