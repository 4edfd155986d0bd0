package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/store"
)

// The commands other than check and run, each opening the state directory itself: the CLI
// never sees the database.

// withDB runs fn under the state directory's lock with the reconciled database (the
// commands that change something).
func (a *Agent) withDB(ctx context.Context, fn func(*store.DB) error) error {
	unlock, err := a.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	db, err := a.openRecovered(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}

// ReadReport is `status`: read-only (it works while the daemon runs), and a state directory
// never used is reported as such, not as an error.
func (a *Agent) ReadReport() (*Report, error) {
	db, err := a.OpenDBReadOnly()
	if errors.Is(err, ErrNothingInstalled) {
		return &Report{Apps: map[string]AppReport{}}, nil
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return a.Report(db)
}

// VerifyInstalled is `verify`: the OS partition and the active slot re-read against the
// database, read-only. It returns the lines to print and, when the database could not be
// read and the slot manifests stood in for it, a note saying so.
func (a *Agent) VerifyInstalled() (lines []string, note string, err error) {
	db, err := a.OpenDBReadOnly()
	if err != nil {
		return nil, "", err
	}
	defer db.Close()
	if db.Rebuilt {
		note = fmt.Sprintf("the database is unreadable (%s); verifying against the slot manifests (the next check rebuilds it)", db.Damage)
	}
	osLine, err := a.VerifyOS(db)
	if err != nil {
		return nil, note, err
	}
	if osLine != "" {
		lines = append(lines, osLine)
	}
	s, err := db.State()
	if err != nil {
		return nil, note, err
	}
	if s == nil {
		if osLine != "" {
			return lines, note, nil
		}
		return nil, note, errors.New("nothing installed: no generation in the database")
	}
	line, damaged, err := a.VerifyActive(s)
	if len(damaged) > 0 && !db.Rebuilt {
		db.Close() // the record is written through a handle of its own
		err = fmt.Errorf("%w; %s", err, a.recordDamage(s.N, damaged))
	}
	if err != nil {
		return nil, note, err
	}
	return append(lines, line), note, nil
}

// recordDamage marks apps of generation n damaged, as the daemon's re-verification does, so
// the next check fetches them again; it says what it did. It needs no instance lock (a
// daemon may hold it): one bbolt transaction changes the record only while generation n is
// still the active one.
func (a *Agent) recordDamage(n int64, damaged map[string]string) string {
	root, err := a.Slots.Root()
	if err == nil {
		var db *store.DB
		if db, err = store.Open(root, dbName, store.Options{Timeout: 5 * time.Second}); err == nil {
			err = db.MarkDamaged(n, damaged)
			db.Close()
		}
	}
	apps := strings.Join(slices.Sorted(maps.Keys(damaged)), ", ")
	if err != nil {
		return fmt.Sprintf("could not record it (%v): the daemon's re-verification (verify.interval) will", err)
	}
	return fmt.Sprintf("recorded: the next check fetches %s again", apps)
}

// ErrFirstGeneration: `rollback` of the first generation would leave nothing installed.
var ErrFirstGeneration = errors.New("this is the first generation: rolling back leaves the device running nothing")

// RollbackByHand is `rollback`: back to the previous generation; it says where it went. The
// releases it leaves are refused until the server offers others (or `ota-agent retry`),
// so the next check does not install them again. The first generation is rolled back to
// nothing only with force.
func (a *Agent) RollbackByHand(ctx context.Context, force bool) (string, error) {
	var out string
	err := a.withDB(ctx, func(db *store.DB) error {
		s, err := db.State()
		if err != nil {
			return err
		}
		if s != nil && s.Previous == nil && !force {
			return fmt.Errorf("%w (generation %d, slot %s); ota-agent rollback --force does it", ErrFirstGeneration, s.N, s.Slot)
		}
		if err := a.Rollback(ctx, db, "rolled back by hand"); err != nil {
			return err
		}
		if s, err = db.State(); err != nil {
			return err
		}
		if s == nil {
			out = "rolled back: nothing is installed now"
		} else {
			out = fmt.Sprintf("rolled back: slot %s, generation %d", s.Slot, s.N)
		}
		return nil
	})
	return out, err
}

// Retry is `retry APP`: the refusals of APP's releases end (and their failed attempts are
// forgotten), so the next check may install them again. It says what it cleared.
func (a *Agent) Retry(ctx context.Context, app string) (string, error) {
	var out []string
	err := a.withDB(ctx, func(db *store.DB) error {
		refused, err := db.Refusals()
		if err != nil {
			return err
		}
		var md5s []string
		for md5, r := range refused {
			if r.App == app {
				md5s = append(md5s, md5)
				out = append(out, fmt.Sprintf("%s %s (md5 %s) is no longer refused (was: %s)", r.App, r.Version, md5, r.Reason))
			}
		}
		if len(md5s) == 0 {
			return fmt.Errorf("%w: nothing of %s is refused (ota-agent status lists the refusals)", ErrNotRefused, app)
		}
		if err := db.Unrefuse(md5s...); err != nil {
			return err
		}
		return errors.Join(db.ForgetAttempts(md5s...), db.ForgetReceipts(md5s...))
	})
	slices.Sort(out)
	return strings.Join(append(out, "the next check may install it again"), "\n"), err
}

// ErrNotRefused: `retry APP` found no refusal of APP.
var ErrNotRefused = errors.New("not refused")

// MarkGoodNow is `mark-good`: commits the OS slot the device booted into.
func (a *Agent) MarkGoodNow(ctx context.Context) (string, error) {
	var out string
	err := a.withDB(ctx, func(db *store.DB) error {
		if err := a.MarkGood(db); err != nil {
			return err
		}
		out = fmt.Sprintf("OS slot %s committed", a.OSStatus(db).Committed)
		return nil
	})
	return out, err
}

// ErrNothingStaged: `apply` found no staged generation.
var ErrNothingStaged = errors.New("nothing is staged")

// Apply is `ota-agent apply`: switch the staged generation now, window or not.
func (a *Agent) Apply(ctx context.Context) (string, error) {
	var out string
	err := a.withDB(ctx, func(db *store.DB) error {
		res, err := a.ApplyStaged(ctx, db, true)
		if err != nil {
			return err
		}
		if res == nil {
			return fmt.Errorf("%w: no sealed update waits for an install window (ota-agent status)", ErrNothingStaged)
		}
		s, _ := db.State()
		out = fmt.Sprintf("applied: slot %s, generation %d, %s", s.Slot, s.N, s.Status)
		return nil
	})
	return out, err
}
