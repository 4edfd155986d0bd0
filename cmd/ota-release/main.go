// Command ota-release is the publisher's offline tool: make release keys, sign a catalog.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

const usage = `usage:
  ota-release keygen --out NAME            writes NAME.pem (PKCS#8) and NAME.pub.pem (PKIX)
  ota-release sign --key KEY.pem[,KEY2.pem] --catalog DIR [--v1]
                                           signs every row (v2: bound to its channel and
                                           device class; each key signs, for thresholds),
                                           assigning serials, and writes <binary>.release
                                           beside each binary
  ota-release delta [--go|--blocks] OLD NEW writes NEW.from-<first 16 hex of sha256(OLD)>.zst,
                                           a zstd patch devices holding OLD fetch instead
                                           of NEW (the zstd command when installed); with
                                           --blocks NEW.from-<h16>.blocks, applied with
                                           bounded memory (images, large files)
  ota-release index NEW                     writes NEW.chunks: its content-defined chunks, so
                                           devices fetch only the chunks they lack (images)
  ota-release timestamp --key KEY.pem[,...] --expires 7d (--catalog DIR | --out FILE)
                                           writes ota-timestamp.release: signed issue time
                                           and expiry (devices detect a frozen mirror)
  ota-release keys rotate --sign-with KEY.pem[,...] [--add NEW.pub.pem,...]
                     [--remove OLD.pub.pem,...] [--threshold N]
                     [--current A.pub.pem,...] (--catalog DIR | --out FILE)
                                           appends the next version of the trusted key
                                           set to ota-keys.release, signed by a threshold
                                           of the current one (--current: the devices'
                                           trust.keys, for the first version)
  ota-release bundle --catalog DIR --out FILE.tar.gz --cpu ARCH [--os CHANNEL]
                     [--attr NAME=CHANNEL ...] [--pin APP=CHANNEL ...]
                                           writes what the server would send that device,
                                           statements inline, for ota-agent install (offline)
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ota-release:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command given")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "keygen":
		out := fs.String("out", "", "file name prefix")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("keygen: --out NAME is required")
		}
		priv, pub, err := packaging.GenerateKey()
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out+".pem", priv, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(*out+".pub.pem", pub, 0o644); err != nil {
			return err
		}
		k, _ := packaging.ParsePublicKeyPEM(pub)
		fmt.Fprintf(stdout, "wrote %s.pem and %s.pub.pem (keyid %s)\n", *out, *out, packaging.KeyID(k))
		return nil
	case "sign":
		return sign(fs, args[1:], stdout)
	case "delta":
		return delta(fs, args[1:], stdout)
	case "index":
		return index(fs, args[1:], stdout)
	case "timestamp":
		return timestamp(fs, args[1:], stdout)
	case "keys":
		if len(args) < 2 || args[1] != "rotate" {
			return errors.New("keys: the command is `keys rotate` (see --help)")
		}
		return rotate(flag.NewFlagSet("keys rotate", flag.ContinueOnError), args[2:], stdout)
	case "bundle":
		return bundle(fs, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stdout, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// pairs is a repeatable NAME=VALUE flag.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }
func (p pairs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || val == "" {
		return fmt.Errorf("%q: want NAME=CHANNEL", v)
	}
	p[strings.ToLower(k)] = val
	return nil
}

func bundle(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("catalog", "", "catalog directory")
	out := fs.String("out", "", "the payload to write (.tar.gz)")
	cpu := fs.String("cpu", "", "the device's cpuArch (armv7, armv8)")
	osCh := fs.String("os", "prod", "the device's OS channel")
	attrs, pins := pairs{}, pairs{}
	fs.Var(attrs, "attr", "a device attribute and its channel, NAME=CHANNEL (repeatable)")
	fs.Var(pins, "pin", "an app pinned to a channel, APP=CHANNEL (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *out == "" || *cpu == "" {
		return errors.New("bundle: --catalog, --out and --cpu are required")
	}
	c, err := catalog.Load(*dir)
	if err != nil {
		return err
	}
	facts := map[string]string{"cpuarch": strings.ToLower(*cpu), "os": *osCh}
	for k, v := range attrs {
		facts["attr"+k] = v
	}
	for k, v := range pins {
		facts[k] = v
	}
	rows := c.Select(facts)
	if len(rows) == 0 {
		return errors.New("bundle: no row of the catalog is for that device")
	}
	tmp := *out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := c.Bundle(f, rows, time.Now()); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "%s %s (%s)\n", r.App, r.Version, r.Env)
	}
	fmt.Fprintf(stdout, "wrote %s: %d apps\n", *out, len(rows))
	return nil
}
