// Package daemon is `ota-agent run`'s loop: a check at start, then on a schedule that makes
// devices with the same request share the edge's cache (NextCheck), a backoff after
// failures, a check now on request (SIGUSR1), a reload of the configuration (SIGHUP), and
// what systemd is told (sd_notify: READY, STATUS, WATCHDOG, STOPPING). At most one check runs
// at a time.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ota-agent/ota-agent/internal/protocol"
)

// Backoff after failed checks: doubling from backoffBase, capped at min(poll.interval,
// backoffCap), half fixed and half random so a fleet that failed together spreads out.
const (
	backoffBase = 30 * time.Second
	backoffCap  = time.Hour
)

// Runner is one loaded configuration as the daemon runs it (agent.Agent makes one).
type Runner struct {
	Log              *slog.Logger
	Interval, Jitter time.Duration // poll.interval, poll.jitter
	Align            bool          // poll.align
	Now              func() time.Time
	// Check runs one check, telling its progress to status.
	Check func(ctx context.Context, status func(string)) Outcome
}

// Outcome of one check.
type Outcome struct {
	Key  string    // the next request's cache key (NextCheck)
	Wake time.Time // a staged generation's install window opens (zero: none)
	Turn time.Time // a release deferred by a phased rollout may install (zero: none)
	Err  error
}

// Options configure Run.
type Options struct {
	// Load builds the runner: at start and on every Reload (an error keeps the old one).
	Load func() (*Runner, error)
	// CheckNow (SIGUSR1) asks for a check now; Reload (SIGHUP) for a new configuration.
	CheckNow, Reload <-chan struct{}
	// Notify sends an sd_notify state (default: to NOTIFY_SOCKET, nothing without it).
	Notify func(state string)
	// Watchdog is the interval of WATCHDOG=1 (0: none).
	Watchdog time.Duration
	// BackoffBase is the first wait after a failure (default 30 s).
	BackoffBase time.Duration
	// Checked, when set, receives every check's error (nil for success).
	Checked func(error)
}

// Run is the loop, until ctx ends (SIGTERM): a running check is then stopped promptly.
func Run(ctx context.Context, o Options) error {
	r, err := o.Load()
	if err != nil {
		return err
	}
	if o.Notify == nil {
		o.Notify = sdNotify(r.Log)
	}
	d := &loop{o: o, r: r, done: make(chan Outcome, 1), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	var wdTick <-chan time.Time
	if o.Watchdog > 0 {
		t := time.NewTicker(o.Watchdog)
		defer t.Stop()
		wdTick = t.C
	}
	o.Notify(daemon.SdNotifyReady)
	r.Log.Info("daemon started", "interval", r.Interval, "watchdog", o.Watchdog*2)
	timer := time.NewTimer(0) // check at start
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.stop()
			return nil
		case <-timer.C:
			d.start(ctx, d.asked)
			d.asked = false
		case <-o.CheckNow:
			d.checkNow(ctx)
		case <-o.Reload:
			d.reload()
		case out := <-d.done:
			wait := d.finished(out)
			if d.again {
				d.again, d.asked, wait = false, true, 0
			}
			timer.Reset(wait)
		case <-wdTick:
			o.Notify(daemon.SdNotifyWatchdog)
		}
	}
}

// loop is the daemon's state between events.
type loop struct {
	o        Options
	r        *Runner
	running  context.CancelFunc
	again    bool // a check was asked for during the running one: another follows it
	asked    bool // the next timed check is that one
	done     chan Outcome
	failures int
	rng      *rand.Rand
}

func (d *loop) status(s string) { d.o.Notify("STATUS=" + s) }

// start begins a check unless one is running; asked: the operator asked for it (Asked).
func (d *loop) start(ctx context.Context, asked bool) {
	if d.running != nil {
		return
	}
	if asked {
		ctx = context.WithValue(ctx, askedKey{}, true)
	}
	cctx, cancel := context.WithCancel(ctx)
	d.running = cancel
	r := d.r
	go func() { d.done <- r.Check(cctx, d.status) }()
}

// checkNow is SIGUSR1: a check now, or right after the running one (not dropped: the
// operator may have changed something the running check missed).
func (d *loop) checkNow(ctx context.Context) {
	if d.running != nil {
		d.r.Log.Info("SIGUSR1: a check is running; another follows it")
		d.again = true
		return
	}
	d.r.Log.Info("SIGUSR1: checking now")
	d.start(ctx, true)
}

type askedKey struct{}

// Asked says whether the check of ctx was asked for (SIGUSR1), not scheduled: the agent
// then makes the whole check, never a shortcut of an earlier one.
func Asked(ctx context.Context) bool { v, _ := ctx.Value(askedKey{}).(bool); return v }

// stop ends a running check (SIGTERM) and says so to systemd.
func (d *loop) stop() {
	d.o.Notify(daemon.SdNotifyStopping)
	if d.running != nil {
		d.running()
		select {
		case <-d.done:
		case <-time.After(2 * time.Second):
			d.r.Log.Warn("check did not stop within 2s; exiting anyway")
		}
	}
	d.r.Log.Info("daemon stopped")
}

// reload is SIGHUP: a new configuration, or the old one kept with the reason logged.
func (d *loop) reload() {
	r, err := d.o.Load()
	if err != nil {
		d.r.Log.Error("SIGHUP: configuration not reloaded; keeping the old one", "error", err)
		d.status("config reload failed, keeping the old one: " + err.Error())
		return
	}
	d.r = r
	d.r.Log.Info("SIGHUP: configuration reloaded")
}

// finished records a check's end and returns the wait until the next one.
func (d *loop) finished(out Outcome) time.Duration {
	d.running = nil
	if d.o.Checked != nil {
		d.o.Checked(out.Err)
	}
	if out.Err == nil {
		d.failures = 0
		now := d.r.Now()
		wait := NextCheck(now, out.Key, d.r.Interval, d.r.Jitter, d.r.Align, d.rng).Sub(now)
		what := "idle, next check "
		if turn := out.Turn.Sub(now) + turnJitter(d.r.Jitter, d.rng); !out.Turn.IsZero() && turn < wait {
			wait, what = max(turn, time.Second), "deferred by a phased rollout, next check " // this device's turn comes
		}
		if !out.Wake.IsZero() && out.Wake.Sub(now) < wait {
			wait, what = max(out.Wake.Sub(now), time.Second), "staged, installs at " // the install window of a staged update opens
		}
		d.status(what + time.Now().Add(wait).Format("15:04"))
		return wait
	}
	d.failures++
	wait := backoff(d.failures, cmp.Or(d.o.BackoffBase, backoffBase), d.r.Interval, out.Err)
	d.status(fmt.Sprintf("failed: %v, retry in %v", oneLine(out.Err), wait.Round(time.Second)))
	return wait
}

// maxTurnJitter bounds the spread of the checks at a phased rollout's turn: the turns of a
// fleet are spread already (each device has its own), this only keeps them off the second.
const maxTurnJitter = 5 * time.Minute

// turnJitter is a random part of min(poll.jitter, maxTurnJitter).
func turnJitter(jitter time.Duration, rng *rand.Rand) time.Duration {
	if j := min(jitter, maxTurnJitter); j > 0 {
		return time.Duration(rng.Int64N(int64(j)))
	}
	return 0
}

// backoff is the wait after the nth consecutive failure; a Retry-After is honoured up to
// the cap.
func backoff(n int, base, interval time.Duration, err error) time.Duration {
	limit := min(backoffCap, max(interval, base))
	d := base << min(n-1, 16)
	d = min(d, limit)
	wait := d/2 + rand.N(d/2+1)
	var re *protocol.RetryError
	if errors.As(err, &re) && re.After > 0 {
		wait = max(wait, min(re.After, limit))
	}
	return wait
}

func oneLine(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// sdNotify sends sd_notify datagrams; without NOTIFY_SOCKET it does nothing.
func sdNotify(log *slog.Logger) func(string) {
	return func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Debug("sd_notify failed", "error", err)
		}
	}
}
