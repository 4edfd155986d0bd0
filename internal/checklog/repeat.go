package checklog

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/ota-agent/ota-agent/store"
)

// Repeat is the daemon's poll while nothing changes, for fleets that poll often. After a
// full check that found nothing new and was recorded quietly, the daemon keeps the request
// that check sent and the identity of agent.db and `current` as it left them. The next
// poll, while both are unchanged and nothing is due, sends that request alone: a 304 is
// recorded in runtime_dir as the full check records it, and agent.db is not opened.
// Anything else (another status, an error, a changed file, a raised clock floor) forgets
// it, and the full check runs and asks again. Due means agent.db's record is an hour old
// (PersistEvery: it takes the record then), or a periodic task of the agent (a re-verify,
// a key-set refresh) could be due.
type Repeat struct {
	Query, INM string
	Key        string // the request key the daemon's schedule aligns on
	Slot       string
	ident      Ident
	base, last store.CheckRecord // agent.db's record, and the newest quiet one after it
	checks     int64             // quiet checks since base
	floor      time.Time         // agent.db's time floor
	until      time.Time
}

// Ident is what any write to the state directory's database or a switch changes.
type Ident struct {
	dev, ino, size uint64
	mtime          int64
	current        string
}

// StateIdent reads the identity of the database file db and the link `current` in root.
func StateIdent(root *os.Root, db string) (Ident, error) {
	if root == nil {
		return Ident{}, errors.New("the state directory is not open")
	}
	fi, err := root.Stat(db)
	if err != nil {
		return Ident{}, err
	}
	id := Ident{size: uint64(fi.Size()), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), uint64(st.Ino)
	}
	if id.current, err = root.Readlink("current"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Ident{}, err
	}
	return id, nil
}

// Repeat is the poll that may follow the check just recorded (r's request fields set by
// the caller), or nil when it was not recorded quietly. every lists the periods of the
// agent's own periodic tasks: the repeat ends before the first could be due.
func (l Log) Repeat(r Repeat, id Ident, now time.Time, every ...time.Duration) *Repeat {
	base, last, checks, floor, ok := l.Quiet()
	if !ok || r.Query == "" {
		return nil
	}
	r.ident, r.base, r.last, r.checks, r.floor = id, base, last, checks, floor
	r.until = base.Time.Add(PersistEvery)
	for _, e := range every {
		if e > 0 && now.Add(e).Before(r.until) {
			r.until = now.Add(e)
		}
	}
	return &r
}

// Fits says whether the repeat may be sent now, with the state directory as it is.
func (r *Repeat) Fits(now time.Time, id Ident) bool {
	return id == r.ident && now.Before(r.until) && !now.Before(r.last.Time)
}

// Answered records the repeat's 304 at now (it took took), unless the clock floor rose
// above agent.db's (false: the full check must record that).
func (l Log) Answered(r *Repeat, now time.Time, took time.Duration, floor time.Time) (bool, error) {
	if floor.After(r.floor) {
		return false, nil
	}
	rec := r.last
	rec.Time, rec.Duration = now, took
	if err := l.writeQuiet(quietRecord{Base: r.base.Time, Record: rec, Checks: r.checks + 1}); err != nil {
		return false, err
	}
	r.last, r.checks = rec, r.checks+1
	return true, nil
}
