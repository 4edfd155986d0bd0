package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Backoff after failed checks: doubling from backoffBase, capped at min(poll.interval,
// backoffCap), half fixed and half random so a fleet that failed together spreads out.
const (
	backoffBase = 30 * time.Second
	backoffCap  = time.Hour
)

// DaemonOptions configure RunDaemon.
type DaemonOptions struct {
	// Load reads the configuration and builds an agent; called at start and on SIGHUP.
	Load func() (*Agent, error)
	// BackoffBase is the first wait after a failure (default 30 s).
	BackoffBase time.Duration
	// Checked, when set, receives every check's error (nil for success).
	Checked func(error)
}

// RunDaemon is `ota-agent run`: a check at start, then every poll.interval (+ jitter);
// SIGUSR1 checks now, SIGHUP reloads the configuration (a bad one is logged and the old kept),
// ctx's end (SIGTERM) stops promptly. It speaks sd_notify when NOTIFY_SOCKET is set and is
// silent otherwise.
func RunDaemon(ctx context.Context, o DaemonOptions) error {
	a, err := o.Load()
	if err != nil {
		return err
	}
	if err := a.Cfg.RequireServer(); err != nil {
		return err
	}
	unlock, err := a.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	d := &daemonLoop{o: o, a: a, n: notifier{log: a.Log}, done: make(chan outcome, 1),
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	usr1 := make(chan os.Signal, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(usr1)
	defer signal.Stop(hup)
	wd := time.Duration(0)
	if us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		wd = time.Duration(us) * time.Microsecond / 2
	}
	var wdTick <-chan time.Time
	if wd > 0 {
		t := time.NewTicker(wd)
		defer t.Stop()
		wdTick = t.C
	}
	d.n.send(daemon.SdNotifyReady)
	a.Log.Info("daemon started", "state_dir", a.Slots.Dir, "interval", a.Cfg.Poll.Interval, "watchdog", wd*2)
	timer := time.NewTimer(0) // check at start
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.stop()
			return nil
		case <-timer.C:
			d.start(ctx)
		case <-usr1:
			if d.running != nil {
				// Not dropped: the operator may have changed something the running check missed.
				d.a.Log.Info("SIGUSR1: a check is running; another follows it")
				d.again = true
				continue
			}
			d.a.Log.Info("SIGUSR1: checking now")
			d.start(ctx)
		case <-hup:
			d.reload()
		case out := <-d.done:
			wait := d.finished(out)
			if d.again {
				d.again, wait = false, 0
			}
			timer.Reset(wait)
		case <-wdTick:
			d.n.send(daemon.SdNotifyWatchdog)
		}
	}
}

// outcome of one check in the daemon.
type outcome struct {
	key  string    // the next request's cache key
	wake time.Time // a staged generation's install window opens (zero: none)
	err  error
}

// daemonLoop is the daemon's state between events: at most one check runs at a time.
type daemonLoop struct {
	o        DaemonOptions
	a        *Agent
	n        notifier
	running  context.CancelFunc
	again    bool // a SIGUSR1 came during the running check: check again when it ends
	done     chan outcome
	failures int
	rng      *rand.Rand
}

// start begins a check unless one is running.
func (d *daemonLoop) start(ctx context.Context) {
	if d.running != nil {
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	d.running = cancel
	ag := d.a
	ag.Status = func(s string) { d.n.status(s) }
	go func() {
		d.done <- ag.runOnce(cctx)
	}()
}

// stop ends a running check (SIGTERM) and says so to systemd.
func (d *daemonLoop) stop() {
	d.n.send(daemon.SdNotifyStopping)
	if d.running != nil {
		d.running()
		select {
		case <-d.done:
		case <-time.After(2 * time.Second):
			d.a.Log.Warn("check did not stop within 2s; exiting anyway")
		}
	}
	d.a.Log.Info("daemon stopped")
}

// reload is SIGHUP: a new configuration, or the old one kept with the reason logged.
func (d *daemonLoop) reload() {
	na, err := d.o.Load()
	if err == nil {
		err = na.Cfg.RequireServer()
	}
	switch {
	case err != nil:
		d.a.Log.Error("SIGHUP: configuration not reloaded; keeping the old one", "error", err)
		d.n.status("config reload failed, keeping the old one: " + err.Error())
	case na.Slots.Dir != d.a.Slots.Dir:
		d.a.Log.Error("SIGHUP: state_dir cannot change while running; restart the service", "old", d.a.Slots.Dir, "new", na.Slots.Dir)
	default:
		na.Slots, na.tidy = d.a.Slots, d.a.tidy // the same directory, opened once
		d.a = na
		d.a.Log.Info("SIGHUP: configuration reloaded")
	}
}

// finished records a check's end and returns the wait until the next one.
func (d *daemonLoop) finished(out outcome) time.Duration {
	d.running = nil
	err := out.err
	if d.o.Checked != nil {
		d.o.Checked(err)
	}
	if err == nil {
		d.failures = 0
		now := d.a.Clock.Now()
		wait := NextCheck(now, out.key, d.a.Cfg.Poll.Interval, d.a.Cfg.Poll.Jitter, d.a.Cfg.Poll.Align, d.rng).Sub(now)
		if !out.wake.IsZero() && out.wake.Sub(now) < wait {
			wait = max(out.wake.Sub(now), time.Second) // the install window of a staged update opens
			d.n.status("staged, installs at " + time.Now().Add(wait).Format("15:04"))
			return wait
		}
		d.n.status("idle, next check " + time.Now().Add(wait).Format("15:04"))
		return wait
	}
	d.failures++
	wait := backoff(d.failures, cmp.Or(d.o.BackoffBase, backoffBase), d.a.Cfg.Poll.Interval, err)
	d.n.status(fmt.Sprintf("failed: %v, retry in %v", oneLine(err), wait.Round(time.Second)))
	return wait
}

// runOnce opens the database for one check (so `status` can read between checks) and
// returns the cache key of the next one.
func (a *Agent) runOnce(ctx context.Context) outcome {
	db, err := a.openRecovered(ctx)
	if err != nil {
		a.Log.Error("cannot open the state directory's database; retrying later", "state_dir", a.Slots.Dir, "error", err)
		return outcome{err: err}
	}
	defer db.Close()
	if err := a.reverify(ctx, db); err != nil && ctx.Err() == nil {
		a.Log.Error("verify: could not re-verify the active slot", "error", err)
	}
	if _, err = a.CheckWith(ctx, db, CheckOptions{}); err != nil {
		return outcome{err: err}
	}
	out := outcome{key: a.RequestKey(db)}
	if g, _ := db.Staged(); g != nil {
		out.wake = a.Cfg.NextWindow(a.now(db).Local())
	}
	return out
}

// backoff is the wait after the nth consecutive failure; a Retry-After is honoured up to
// the cap.
func backoff(n int, base, interval time.Duration, err error) time.Duration {
	limit := min(backoffCap, max(interval, base))
	d := base << min(n-1, 16)
	d = min(d, limit)
	wait := d/2 + rand.N(d/2+1)
	var re *RetryError
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

// notifier sends sd_notify datagrams; without NOTIFY_SOCKET it does nothing.
type notifier struct {
	log interface{ Debug(string, ...any) }
}

func (n notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Debug("sd_notify failed", "error", err)
	}
}

func (n notifier) status(s string) { n.send("STATUS=" + s) }
