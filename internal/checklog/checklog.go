// Package checklog keeps the record of each check: agent.db's, with the time floor and the
// counters in the same commit, or, for a check that changed nothing, a file in runtime_dir.
//
// Quiet polls: a check that finds nothing new (a 304 like the check agent.db last recorded)
// writes nothing durable. Its record goes to runtime_dir (tmpfs: no fdatasync, no flash
// wear), and agent.db takes the record at most hourly, or at the first check that differs
// (an update, a failure, a removal), counting the quiet checks then. status, metrics and the
// staleness judgement read the newer of the two. A power cut loses at most an hour of "last
// checked" times, never anything an install depends on.
package checklog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"time"

	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/store"
)

// PersistEvery is how old agent.db's record may get before a quiet check goes there anyway.
const PersistEvery = time.Hour

// Log is where one state directory's checks are recorded.
type Log struct {
	DB         *store.DB
	RuntimeDir string // "": every check goes to agent.db
	StateDir   string // several agents may share runtime_dir: the file is named for it
}

// quietRecord is the runtime file: the last check, after the agent.db record at Base.
type quietRecord struct {
	Base   time.Time         `json:"base"` // agent.db's record it follows (another: ignored)
	Record store.CheckRecord `json:"record"`
	Checks int64             `json:"checks"` // quiet checks since Base, not yet counted in agent.db
}

func (l Log) path() string {
	h := fnv.New64a()
	h.Write([]byte(l.StateDir))
	return filepath.Join(l.RuntimeDir, fmt.Sprintf("check-%016x.json", h.Sum64()))
}

// quietAfter is the runtime record that follows base (nil: none, or it follows another).
func (l Log) quietAfter(base *store.CheckRecord) *quietRecord {
	if base == nil || l.RuntimeDir == "" {
		return nil
	}
	var q quietRecord
	for try := 0; ; try++ { // a write in place may be half done: read again
		raw, err := os.ReadFile(l.path())
		if err != nil || len(raw) > 64<<10 {
			return nil
		}
		if json.Unmarshal(raw, &q) == nil {
			break
		}
		if try == 2 {
			return nil
		}
	}
	if !q.Base.Equal(base.Time) || q.Record.Time.Before(base.Time) {
		return nil
	}
	return &q
}

// quietBlock: the runtime file is padded with spaces to a multiple of it, so the next
// record of the same size class overwrites it in place.
const quietBlock = 512

// writeQuiet keeps q in the runtime file (tmpfs needs no fsync). A file of the padded
// size is overwritten in place (open, fstat, pwrite: no inode made or dropped, which is
// most of what a repeated poll cost); any other is replaced by a rename. A reader that
// meets a write half done parses garbage and reads again (quietAfter).
func (l Log) writeQuiet(q quietRecord) error {
	path := l.path()
	raw, err := json.Marshal(q)
	if err != nil {
		return err
	}
	raw = append(raw, bytes.Repeat([]byte{' '}, quietBlock-len(raw)%quietBlock)...)
	if fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0); err == nil {
		var st syscall.Stat_t
		same := syscall.Fstat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Size == int64(len(raw))
		var n int
		if same {
			n, err = syscall.Pwrite(fd, raw, 0)
		}
		syscall.Close(fd)
		if same && err == nil && n == len(raw) {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", raw, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// quiet says whether rec may go to the runtime file: nothing but its time and duration
// differs from prev (agent.db's), which is under an hour old, it found nothing new, and
// floor (the clock floor now) is no higher than agent.db's.
func (l Log) quiet(prev *store.CheckRecord, rec store.CheckRecord, floor time.Time) bool {
	if l.RuntimeDir == "" || prev == nil || rec.Result != result.UpToDateResult || rec.Error != "" || rec.Bytes != 0 {
		return false
	}
	if age := rec.Time.Sub(prev.Time); age < 0 || age >= PersistEvery {
		return false
	}
	same, was := rec, *prev
	same.Time, same.Duration, was.Time, was.Duration = time.Time{}, 0, time.Time{}, 0
	if !reflect.DeepEqual(same, was) {
		return false
	}
	held, err := l.DB.TimeFloor()
	return err == nil && !floor.After(held)
}

// Record keeps rec: in the runtime file when it is quiet, else in agent.db with the time
// floor and count (the counters of this check; the quiet ones before it are added) in one
// commit. quietly says which; a counters error is logged by warn, the record kept.
func (l Log) Record(rec store.CheckRecord, floor time.Time, count func(*store.Counters), warn func(string, ...any)) (quietly bool, err error) {
	prev, perr := l.DB.LastCheck()
	q := l.quietAfter(prev)
	if perr == nil && l.quiet(prev, rec, floor) {
		n := int64(1)
		if q != nil {
			n += q.Checks
		}
		werr := l.writeQuiet(quietRecord{Base: prev.Time, Record: rec, Checks: n})
		if werr == nil {
			return true, nil
		}
		warn("runtime_dir is not writable: the check is recorded in agent.db", "error", werr)
	}
	var before int64 // quiet checks, counted now
	if q != nil {
		before = q.Checks
	}
	return false, l.DB.Batch(func(db *store.DB) error {
		if err := db.RecordCheck(rec); err != nil {
			return err
		}
		if err := db.RaiseTimeFloor(floor); err != nil {
			return err
		}
		if cerr := db.Count(func(c *store.Counters) { c.Checks += before; count(c) }); cerr != nil {
			warn("counters not updated", "err", cerr)
		}
		return nil
	})
}

// Quiet is the state a check left when it was recorded quietly: agent.db's record, the
// newest runtime one after it, the quiet checks since, and agent.db's time floor. ok is
// false when the newest record is agent.db's (the check was not quiet).
func (l Log) Quiet() (base, last store.CheckRecord, checks int64, floor time.Time, ok bool) {
	b, err := l.DB.LastCheck()
	if err != nil || b == nil {
		return
	}
	q := l.quietAfter(b)
	if q == nil {
		return
	}
	if floor, err = l.DB.TimeFloor(); err != nil {
		return
	}
	return *b, q.Record, q.Checks, floor, true
}

// Last is the newest record of a check: agent.db's, or the runtime file's after it.
func (l Log) Last() (*store.CheckRecord, error) {
	c, err := l.DB.LastCheck()
	if err != nil {
		return nil, err
	}
	if q := l.quietAfter(c); q != nil {
		return &q.Record, nil
	}
	return c, nil
}

// Counters are agent.db's, with the quiet checks it has not counted yet.
func (l Log) Counters() (store.Counters, error) {
	c, err := l.DB.Counters()
	if err != nil {
		return c, err
	}
	if last, err := l.DB.LastCheck(); err == nil {
		if q := l.quietAfter(last); q != nil {
			c.Checks += q.Checks
		}
	}
	return c, nil
}
