package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/ota-agent/ota-agent/internal/daemon"
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

// RunDaemon is `ota-agent run` (internal/daemon): a check at start, then every
// poll.interval (+ jitter); SIGUSR1 checks now, SIGHUP reloads the configuration (a bad one
// is logged and the old kept; the state directory may not change), ctx's end (SIGTERM) stops
// promptly. It holds the state directory's lock throughout and speaks sd_notify when
// NOTIFY_SOCKET is set.
func RunDaemon(ctx context.Context, o DaemonOptions) error {
	cur, err := o.Load()
	if err == nil {
		err = cur.Cfg.RequireServer()
	}
	if err != nil {
		return err
	}
	unlock, err := cur.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	usr1, hup := signals(ctx, syscall.SIGUSR1), signals(ctx, syscall.SIGHUP)
	first := true
	load := func() (*daemon.Runner, error) {
		if first {
			first = false
			return cur.runner(), nil
		}
		na, err := o.Load()
		if err == nil {
			err = na.Cfg.RequireServer()
		}
		if err == nil && na.Slots.Dir != cur.Slots.Dir {
			err = fmt.Errorf("state_dir cannot change while running (%s, was %s): restart the service", na.Slots.Dir, cur.Slots.Dir)
		}
		if err != nil {
			return nil, err
		}
		na.Slots, na.tidy = cur.Slots, cur.tidy // the same directory, opened once
		cur = na
		return cur.runner(), nil
	}
	return daemon.Run(ctx, daemon.Options{Load: load, CheckNow: usr1, Reload: hup, Watchdog: watchdog(),
		BackoffBase: o.BackoffBase, Checked: o.Checked})
}

// runner is the agent as the daemon runs it.
func (a *Agent) runner() *daemon.Runner {
	p := a.Cfg.Poll
	return &daemon.Runner{Log: a.Log, Interval: p.Interval, Jitter: p.Jitter, Align: p.Align, Now: a.Clock.Now,
		Check: func(ctx context.Context, status func(string)) daemon.Outcome {
			a.Status = status
			return a.runOnce(ctx)
		}}
}

// signals turns signal s into events of the daemon until ctx ends.
func signals(ctx context.Context, s os.Signal) <-chan struct{} {
	sig, c := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(sig, s)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				select {
				case c <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return c
}

// watchdog is half of systemd's WATCHDOG_USEC (0: none asked for).
func watchdog() time.Duration {
	if us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		return time.Duration(us) * time.Microsecond / 2
	}
	return 0
}

// runOnce opens the database for one check (so `status` can read between checks) and
// returns the cache key of the next one; while nothing changes, a poll may be the last
// check's request alone (quietpoll.go), never one the operator asked for (SIGUSR1).
func (a *Agent) runOnce(ctx context.Context) daemon.Outcome {
	if out, ok := a.pollQuiet(ctx); ok {
		return out
	}
	db, err := a.openRecovered(ctx)
	if err != nil {
		a.Log.Error("cannot open the state directory's database; retrying later", "state_dir", a.Slots.Dir, "error", err)
		return daemon.Outcome{Err: err}
	}
	defer db.Close()
	if err := a.reverify(ctx, db); err != nil && ctx.Err() == nil {
		a.Log.Error("verify: could not re-verify the active slot", "error", err)
	}
	res, err := a.CheckWith(ctx, db, CheckOptions{})
	a.keepQuiet(db, res, err)
	if err != nil {
		return daemon.Outcome{Err: err}
	}
	out := daemon.Outcome{Key: a.RequestKey(db), Turn: a.NextTurn(db)}
	if g, _ := db.Staged(); g != nil {
		out.Wake = a.Cfg.NextWindow(a.now(db).Local())
	}
	return out
}

// NextCheck is when the daemon checks next after a successful check at now (daemon.NextCheck).
func NextCheck(now time.Time, key string, interval, jitter time.Duration, align bool, rng *rand.Rand) time.Time {
	return daemon.NextCheck(now, key, interval, jitter, align, rng)
}
