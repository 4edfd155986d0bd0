package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/ota-agent/ota-agent/store"
)

// The commands other than check and run, each opening the state directory itself: the CLI
// never sees the database.

// withDB runs fn under the state directory's lock with the reconciled database (the
// commands that change something).
func (a *Agent) withDB(fn func(*store.DB) error) error {
	unlock, err := a.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	db, err := a.openRecovered()
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
	line, err := a.VerifyActive(s)
	if err != nil {
		return nil, note, err
	}
	return append(lines, line), note, nil
}

// RollbackByHand is `rollback`: back to the previous generation; it says where it went.
func (a *Agent) RollbackByHand(ctx context.Context) (string, error) {
	var out string
	err := a.withDB(func(db *store.DB) error {
		if err := a.Rollback(ctx, db, "rolled back by hand"); err != nil {
			return err
		}
		s, err := db.State()
		if err != nil {
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

// MarkGoodNow is `mark-good`: commits the OS slot the device booted into.
func (a *Agent) MarkGoodNow() (string, error) {
	var out string
	err := a.withDB(func(db *store.DB) error {
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
	err := a.withDB(func(db *store.DB) error {
		res, err := a.applyStaged(ctx, db, true)
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
