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
	unlock, err := a.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	n := notifier{log: a.log}
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
	n.send(daemon.SdNotifyReady)
	a.log.Info("daemon started", "state_dir", a.slots.Dir, "interval", a.cfg.Poll.Interval, "watchdog", wd*2)

	timer := time.NewTimer(0) // check at start
	defer timer.Stop()
	type outcome struct {
		key string // the next request's cache key
		err error
	}
	var (
		running  context.CancelFunc
		done     = make(chan outcome, 1)
		failures int
		rng      = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	)
	start := func() {
		if running != nil {
			return
		}
		cctx, cancel := context.WithCancel(ctx)
		running = cancel
		ag := a
		ag.Status = func(s string) { n.status(s) }
		go func() {
			key, err := ag.runOnce(cctx)
			done <- outcome{key, err}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			n.send(daemon.SdNotifyStopping)
			if running != nil {
				running()
				select {
				case <-done:
				case <-time.After(2 * time.Second):
					a.log.Warn("check did not stop within 2s; exiting anyway")
				}
			}
			a.log.Info("daemon stopped")
			return nil
		case <-timer.C:
			start()
		case <-usr1:
			a.log.Info("SIGUSR1: checking now")
			start()
		case <-hup:
			na, err := o.Load()
			switch {
			case err != nil:
				a.log.Error("SIGHUP: configuration not reloaded; keeping the old one", "error", err)
				n.status("config reload failed, keeping the old one: " + err.Error())
			case na.slots.Dir != a.slots.Dir:
				a.log.Error("SIGHUP: state_dir cannot change while running; restart the service", "old", a.slots.Dir, "new", na.slots.Dir)
			default:
				na.slots, na.tidy = a.slots, a.tidy // the same directory, opened once
				a = na
				a.log.Info("SIGHUP: configuration reloaded")
			}
		case out := <-done:
			running = nil
			err := out.err
			if o.Checked != nil {
				o.Checked(err)
			}
			var wait time.Duration
			if err == nil {
				failures = 0
				now := a.clock.Now()
				wait = NextCheck(now, out.key, a.cfg.Poll.Interval, a.cfg.Poll.Jitter, a.cfg.Poll.Align, rng).Sub(now)
				n.status("idle, next check " + time.Now().Add(wait).Format("15:04"))
			} else {
				failures++
				wait = backoff(failures, cmp.Or(o.BackoffBase, backoffBase), a.cfg.Poll.Interval, err)
				n.status(fmt.Sprintf("failed: %v, retry in %v", oneLine(err), wait.Round(time.Second)))
			}
			timer.Reset(wait)
		case <-wdTick:
			n.send(daemon.SdNotifyWatchdog)
		}
	}
}

// runOnce opens the database for one check (so `status` can read between checks) and
// returns the cache key of the next one.
func (a *Agent) runOnce(ctx context.Context) (string, error) {
	db, err := a.OpenDB()
	if err != nil {
		a.log.Error("cannot open the state directory's database; retrying later", "state_dir", a.slots.Dir, "error", err)
		return "", err
	}
	defer db.Close()
	if err := a.reverify(ctx, db); err != nil && ctx.Err() == nil {
		a.log.Error("verify: could not re-verify the active slot", "error", err)
	}
	if _, err = a.CheckWith(ctx, db, CheckOptions{}); err != nil {
		return "", err
	}
	return a.RequestKey(db), nil
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
