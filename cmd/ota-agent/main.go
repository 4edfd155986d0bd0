// Command ota-agent keeps an embedded Linux gateway's binaries current: see `ota-agent help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/spf13/pflag"
)

const usage = `ota-agent: over-the-air updates into A/B slots, verified and crash-safe.

usage: ota-agent [--config FILE] [--root DIR] COMMAND [flags]

commands:
  check --once [--json] [--dry-run]   one update cycle (the plan only, with --dry-run)
  run                                 the daemon: check on a schedule (systemd Type=notify)
  status [--json]                     active slot, apps, trial, last check
  verify                              re-hash the active slot against the database
  apply                               switch a staged update now (install.windows)
  install FILE|DIR [--json]           install a payload (.tar.gz) or binaries + .release files offline
  rollback [--force]                  switch back to the previous generation (its releases
                                      are refused until the server offers others)
  retry APP                           install APP's refused releases again when offered
  mark-good                           commit the OS slot booted after an update (partitions)
  version                             print the version

global flags:
  --config FILE   configuration (default /etc/ota-agent/config.yaml, under --root)
  --root DIR      sysroot: every path the agent touches is taken under DIR (image builders)
  --state-dir DIR, --server-url URL, --log-format text|json   override the configuration
  -v, --verbose   debug logging (on a terminal, logs below WARN are shown only with -v)
  -h, --help      this text; ota-agent COMMAND --help: that command's flags
  --version       the version (as ota-agent version)

exit codes:
  0  ok (updated, or up to date)
  1  failed (a health check rolled back, a verify found differences, another instance runs...)
  2  usage or configuration error
  3  server or network unavailable: try later
  4  update rejected by verification (hashes, signatures, rollback, hostile payload)
  (SIGINT or SIGTERM during a check: "interrupted by a signal", exit 1)
`

// Exit codes (README, "CLI reference").
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnavailable = 3
	exitRejected    = 4
)

var errUsage = errors.New("usage")

type globals struct {
	config, root, stateDir, serverURL, logFormat string
	verbose                                      bool
}

// register adds the global flags to fs, keeping values already parsed (they may be given
// before or after the command).
func (g *globals) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.config, "config", g.config, "configuration file")
	fs.StringVar(&g.root, "root", g.root, "sysroot prefix of every path")
	fs.StringVar(&g.stateDir, "state-dir", g.stateDir, "override state_dir")
	fs.StringVar(&g.serverURL, "server-url", g.serverURL, "override server.url")
	fs.StringVar(&g.logFormat, "log-format", g.logFormat, "override log.format (text|json)")
	fs.BoolVarP(&g.verbose, "verbose", "v", g.verbose, "debug logging")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var g globals
	fs := pflag.NewFlagSet("ota-agent", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.SetOutput(io.Discard)
	g.register(fs)
	help := fs.BoolP("help", "h", false, "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "ota-agent: %v\n\n%s", err, usage)
		return exitUsage
	}
	rest := fs.Args()
	if *showVersion {
		rest = []string{"version"}
	}
	if *help || len(rest) == 0 || rest[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(rest) == 0 && !*help {
			return exitUsage
		}
		return exitOK
	}
	cmds := map[string]func(context.Context, *globals, []string, io.Writer, io.Writer) error{
		"check": runCheck, "run": runDaemon, "status": runStatus, "verify": runVerify,
		"rollback": runRollback, "retry": runRetry, "version": runVersion, "mark-good": runMarkGood, "apply": runApply, "install": runInstall,
	}
	cmd, ok := cmds[rest[0]]
	if !ok {
		fmt.Fprintf(stderr, "ota-agent: unknown command %q\n\n%s", rest[0], usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd(ctx, &g, rest[1:], stdout, stderr)
	var h *helpRequest
	if errors.As(err, &h) {
		fmt.Fprint(stdout, h.text)
		return exitOK
	}
	if errors.Is(err, agent.ErrInterrupted) && !errors.As(err, new(reported)) {
		fmt.Fprintf(stderr, "ota-agent %s: %v\n", rest[0], err)
		return exitFailed
	}
	if err != nil && ctx.Err() != nil && !errors.As(err, new(reported)) {
		// A signal, not the server or the network, ended it: say so, and exit 1 like any
		// local failure (the active slot is as it was unless a switch was reported).
		fmt.Fprintf(stderr, "ota-agent %s: interrupted by a signal: %v\n", rest[0], err)
		return exitFailed
	}
	var r reported
	if err != nil && !errors.As(err, &r) {
		fmt.Fprintf(stderr, "ota-agent %s: %v\n", rest[0], err)
	}
	return exitCode(err)
}

// exitCode decides every exit status in one place.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, agent.ErrConfig):
		return exitUsage
	case errors.Is(err, agent.ErrRejected):
		return exitRejected
	case errors.Is(err, agent.ErrUnavailable):
		return exitUnavailable
	}
	return exitFailed
}

// helpRequest is `COMMAND --help`: its text goes to stdout and the exit status is 0.
type helpRequest struct{ text string }

func (h *helpRequest) Error() string { return "help requested" }

// synopsis of each command for its --help.
var synopsis = map[string]string{
	"check":     "check --once [--json] [--dry-run]: one update cycle (the plan only, with --dry-run)",
	"run":       "run: the daemon, checking on a schedule (systemd Type=notify)",
	"status":    "status [--json]: active slot, apps, trial, last check and verification",
	"verify":    "verify: re-hash the active slot against the database and its manifest",
	"rollback":  "rollback [--force]: switch back to the previous generation; what it leaves is refused until the server offers another release (or ota-agent retry APP); the first generation only with --force (nothing is installed after it)",
	"retry":     "retry APP: end the refusals of APP's releases (a failed health check, install.max_attempts, a rollback by hand), so the next check may install them again",
	"apply":     "apply: switch a staged update now, install window or not (exit 1: nothing staged)",
	"install":   "install FILE.tar.gz|DIR [--json]: verify and install a full payload, or binaries with their .release statements, without the server",
	"mark-good": "mark-good: commit the OS slot booted after an update (partitions)",
	"version":   "version: print the version",
}

// subFlags parses a subcommand's flags; the global flags are accepted there too.
func subFlags(name string, g *globals, args []string, define func(*pflag.FlagSet)) error {
	return subFlagsArgs(name, g, args, define, nil)
}

// subFlagsArgs is subFlags for a command that takes arguments (into rest).
func subFlagsArgs(name string, g *globals, args []string, define func(*pflag.FlagSet), rest *[]string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	if define != nil {
		define(fs)
	}
	fs.BoolP("help", "h", false, "this text")
	if err := fs.Parse(args); errors.Is(err, pflag.ErrHelp) || err == nil && fs.Changed("help") {
		return &helpRequest{text: fmt.Sprintf("usage: ota-agent %s\n\nflags:\n%s", synopsis[name], fs.FlagUsages())}
	} else if err != nil {
		return fmt.Errorf("%w: %v (see ota-agent help)", errUsage, err)
	}
	if rest != nil {
		*rest = fs.Args()
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see ota-agent help)", errUsage, fs.Arg(0))
	}
	return nil
}

// load reads the configuration and builds the agent.
func load(g *globals, stderr io.Writer) (*agent.Agent, error) {
	over := agent.Overrides{}
	if g.stateDir != "" {
		over["state_dir"] = g.stateDir
	}
	if g.serverURL != "" {
		over["server.url"] = g.serverURL
	}
	if g.logFormat != "" {
		over["log.format"] = g.logFormat
	}
	cfg, err := agent.LoadConfig(g.config, g.root, over)
	if err != nil {
		return nil, err
	}
	log := newLogger(cfg, g.verbose, stderr)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	return agent.New(cfg, log)
}

func newLogger(cfg *agent.Config, verbose bool, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case verbose || cfg.Log.Level == "debug":
		level = slog.LevelDebug
	case cfg.Log.Level == "warn":
		level = slog.LevelWarn
	case cfg.Log.Level == "error":
		level = slog.LevelError
	}
	if t := ttyOf(w); t != nil {
		// A person at a terminal sees warnings and the result; -v shows the rest.
		w = t
		if !verbose {
			level = max(level, slog.LevelWarn)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
