// Command ota-release is the publisher's tool: make release keys, sign a catalog, and
// publish it to the deployment.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/spf13/pflag"
)

// version is set by the Makefile (-X main.version).
var version = "dev"

// command is one subcommand: its usage line, what it does, and its flags; run gets the flag
// set parsed and the arguments left.
type command struct {
	usage string
	about string
	flags func(fs *pflag.FlagSet) func(fs *pflag.FlagSet, stdout io.Writer) error
}

var commands = map[string]command{
	"keygen": {"keygen --out NAME [--force]", "writes NAME.pem (PKCS#8, mode 0600) and NAME.pub.pem (PKIX); an existing key is kept unless --force", keygenFlags},
	"sign": {"sign --key KEY.pem [--key KEY2.pem ...] --catalog DIR [--v1] [--ramp 48h|1%:2h,...,100%:48h [--start TIME]]",
		"signs every row (v2: bound to its channel and device class; each key signs, for thresholds) and writes <binary>.release beside each binary. Serials: a row keeps its serial while its signed statement still covers it; new and replaced rows get serials above every serial of their app, in version order (2.0.0-beta < 2.0.0 < 2.1.0), so a device moving to another channel of the same app never sees a newer release as a rollback. --ramp phases the rows numbered new or replaced: each device installs once the signed ramp reaches its stable point (docs/publishing.md, Phased rollouts)", signFlags},
	"delta": {"delta [--go|--blocks] OLD NEW", "writes NEW.from-<first 16 hex of sha256(OLD)>.zst, a zstd patch devices holding OLD fetch instead of NEW (the zstd command when installed), and for an OLD over 4 MiB (the agents' default delta.max_source) NEW.from-<h16>.blocks too, a block patch applied with bounded memory; --blocks writes only the block patch (images)", deltaFlags},
	"index": {"index NEW", "writes NEW.chunks: the content-defined chunks of the regular file NEW (16-256 KiB, with their SHA-256), so devices fetch only the chunks they lack (images)", indexFlags},
	"rollout": {"rollout halt|resume APP VERSION CHANNEL --key KEY.pem [--key ...] --catalog DIR [--at TIME]",
		"halts or resumes the phased rollout of one release (sign --ramp) and signs its statement again with the same serial: after a halt, devices that do not have the release stay out; devices on it keep it; a resume moves the ramp's start by the time it was halted, so it goes on from the share it had reached", rolloutFlags},
	"fleet": {"fleet --url URL [--json]",
		"prints what the devices reported (report.url; docs/fleet.md), per release: devices offered it, deferred by a phased rollout, running it, failed installing it (by error class), rolled back from it, refusing it, and when one was last heard of", fleetFlags},
	"timestamp": {"timestamp --key KEY.pem [--key ...] [--expires 7d] (--catalog DIR | --out FILE)",
		"writes ota-timestamp.release: a signed issue time and expiry (devices detect a frozen mirror)", timestampFlags},
	"keys rotate": {"keys rotate --sign-with KEY.pem [...] [--add NEW.pub.pem ...] [--remove OLD.pub.pem ...] [--threshold N] [--current A.pub.pem ...] (--catalog DIR | --out FILE)",
		"appends the next version of the trusted key set to ota-keys.release, signed by a threshold of the current one (--current: the devices' trust.keys, for the first version), and prints the resulting set. Every flag that names keys may be repeated or take a comma-separated list", rotateFlags},
	"bundle": {"bundle --catalog DIR --out FILE.tar.gz --cpu ARCH [--os CHANNEL] [--attr NAME=CHANNEL ...] [--pin APP=CHANNEL ...]",
		"writes what the server would send that device, statements inline, for ota-agent install (offline); a pin wins over an attribute that selects another row of the same app", bundleFlags},
	"publish": {"publish --catalog DIR --bucket BUCKET --table TABLE [--region R] [--endpoint URL] [--plan] [--prune] [--json]",
		"makes the deployment (the S3 bucket and the DynamoDB table) hold what the signed catalog says: it compares the two (objects by size and MD5, rows attribute by attribute), prints the plan as one table, then uploads each object in one PutObject with its Content-MD5 and reads it back (binaries, then their statements, patches and chunk lists, then the trust documents), then writes the rows, then (--prune) deletes rows and then objects the catalog does not name. A run stopped anywhere is run again; a second run plans nothing. Credentials: the AWS SDK's chain (environment, AWS_PROFILE, SSO, instance or task role); docs/publishing.md lists the permissions", publishFlags},
}

// order is how usage lists the commands.
var order = []string{"keygen", "sign", "rollout", "fleet", "delta", "index", "timestamp", "keys rotate", "bundle", "publish"}

func usage() string {
	var b strings.Builder
	b.WriteString("ota-release: the publisher's tool (keys, signed catalogs, deltas, bundles, publishing).\n\nusage:\n")
	for _, name := range order {
		fmt.Fprintf(&b, "  ota-release %s\n", commands[name].usage)
	}
	b.WriteString("\nota-release COMMAND --help says what a command does and lists its flags.\n")
	b.WriteString("exit codes: 0 ok, 1 failed, 2 usage error, 3 publish --plan: the deployment differs from the catalog\n")
	return b.String()
}

// errUsage marks a command line that cannot run (exit 2).
var errUsage = errors.New("usage")

func main() {
	err := run(os.Args[1:], os.Stdout)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "ota-release:", err)
		os.Exit(2)
	case errors.Is(err, errPending):
		fmt.Fprintln(os.Stderr, "ota-release:", err)
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "ota-release:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage())
		return fmt.Errorf("%w: no command given", errUsage)
	}
	name := args[0]
	switch {
	case name == "help" || name == "-h" || name == "--help":
		fmt.Fprint(stdout, usage())
		return nil
	case name == "--version" || name == "version":
		fmt.Fprintln(stdout, "ota-release", version)
		return nil
	case name == "keys":
		if len(args) < 2 || args[1] != "rotate" {
			if len(args) >= 2 && (args[1] == "--help" || args[1] == "-h") {
				name = "keys rotate"
				break
			}
			return fmt.Errorf("%w: keys: the command is `keys rotate` (ota-release keys rotate --help)", errUsage)
		}
		name, args = "keys rotate", args[1:]
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprint(stdout, usage())
		return fmt.Errorf("%w: unknown command %q", errUsage, name)
	}
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	runCmd := c.flags(fs)
	help := fs.BoolP("help", "h", false, "this text")
	if err := fs.Parse(args[1:]); err != nil && !errors.Is(err, pflag.ErrHelp) {
		return fmt.Errorf("%w: %s: %v (ota-release %s --help)", errUsage, name, err, name)
	} else if err != nil || *help {
		fmt.Fprintf(stdout, "usage: ota-release %s\n\n%s\n\nflags:\n%s", c.usage, wrap(c.about, 90), fs.FlagUsages())
		return nil
	}
	return runCmd(fs, stdout)
}

// wrap breaks text into lines of at most width characters.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		if n > 0 && n+1+len(w) > width {
			b.WriteByte('\n')
			n = 0
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// usageErr is a missing or wrong argument of command name.
func usageErr(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s (ota-release %s --help)", errUsage, name, fmt.Sprintf(format, args...), name)
}

func keygenFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	out := fs.String("out", "", "file name prefix: writes NAME.pem and NAME.pub.pem")
	force := fs.Bool("force", false, "overwrite an existing key pair (its signatures stop verifying)")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if *out == "" {
			return usageErr("keygen", "--out NAME is required")
		}
		if fs.NArg() > 0 {
			return usageErr("keygen", "unexpected argument %q", fs.Arg(0))
		}
		if !*force {
			for _, p := range []string{*out + ".pem", *out + ".pub.pem"} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("keygen: %s exists: a new key would replace the one devices trust; pass --force to overwrite it", p)
				}
			}
		}
		priv, pub, err := packaging.GenerateKey()
		if err != nil {
			return err
		}
		if err := atomicfile.Write(*out+".pem", priv, 0o600); err != nil {
			return err
		}
		if err := atomicfile.Write(*out+".pub.pem", pub, 0o644); err != nil {
			return err
		}
		k, _ := packaging.ParsePublicKeyPEM(pub)
		fmt.Fprintf(stdout, "wrote %s.pem and %s.pub.pem (keyid %s)\n", *out, *out, packaging.KeyID(k))
		return nil
	}
}

// pairs is a repeatable NAME=VALUE flag; names are checked by valid.
type pairs struct {
	m     map[string]string
	what  string
	valid func(string) error
}

func (p *pairs) String() string { return fmt.Sprint(p.m) }
func (p *pairs) Type() string   { return p.what + "=CHANNEL" }
func (p *pairs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || val == "" {
		return fmt.Errorf("%q: want %s=CHANNEL", v, p.what)
	}
	if err := p.valid(k); err != nil {
		return fmt.Errorf("%q: %v", v, err)
	}
	if err := validChannel(val); err != nil {
		return fmt.Errorf("%q: %v", v, err)
	}
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[strings.ToLower(k)] = strings.ToLower(val)
	return nil
}

// validName: an attribute or app name as a device sends it (the agent's rule).
func validName(name string) error {
	if !packaging.ValidToken(name) {
		return fmt.Errorf("name %q: letters, digits, _ . - only", name)
	}
	return nil
}

// validChannel: a channel (the rows' env), the same rule.
func validChannel(ch string) error {
	if !packaging.ValidToken(ch) {
		return fmt.Errorf("channel %q: letters, digits, _ . - only", ch)
	}
	return nil
}

func bundleFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	dir := fs.String("catalog", "", "catalog directory")
	out := fs.String("out", "", "the payload to write (.tar.gz)")
	cpu := fs.String("cpu", "", "the device's cpuArch (armv7, armv8)")
	osCh := fs.String("os", "prod", "the device's OS channel")
	attrs := &pairs{what: "NAME", valid: validName}
	pins := &pairs{what: "APP", valid: validName}
	fs.Var(attrs, "attr", "a device attribute and its channel (repeatable)")
	fs.Var(pins, "pin", "an app pinned to a channel (repeatable); it wins over an attribute's row of the app")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if *dir == "" || *out == "" || *cpu == "" {
			return usageErr("bundle", "--catalog, --out and --cpu are required")
		}
		c, err := catalog.Load(*dir)
		if err != nil {
			return err
		}
		facts := map[string]string{"cpuarch": strings.ToLower(*cpu), "os": strings.ToLower(*osCh)}
		for k, v := range attrs.m {
			facts["attr"+k] = v
		}
		for k, v := range pins.m {
			facts[k] = v
		}
		rows, shadowed := catalog.PinsWin(c.Select(facts), pins.m)
		if len(rows) == 0 {
			return errors.New("bundle: no row of the catalog is for that device")
		}
		for _, r := range shadowed {
			fmt.Fprintf(stdout, "%s %s (%s): left out, --pin %s=%s wins over the attribute that selects it\n", r.App, r.Version, r.Env, r.App, pins.m[strings.ToLower(r.App)])
		}
		err = atomicfile.WriteFunc(*out, 0o644, func(w io.Writer) error { return c.Bundle(w, rows, time.Now()) })
		if err != nil {
			return err
		}
		for _, r := range rows {
			fmt.Fprintf(stdout, "%s %s (%s)\n", r.App, r.Version, r.Env)
		}
		fmt.Fprintf(stdout, "wrote %s: %d apps\n", *out, len(rows))
		return nil
	}
}
