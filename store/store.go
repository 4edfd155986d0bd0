package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked: another process has the database open.
var ErrLocked = errors.New("database is locked by another process")

// ErrDamaged: opened read-only, the file is not a usable database (empty or corrupt); a
// writer would move it aside and rebuild it.
var ErrDamaged = errors.New("database is damaged")

// Options for Open.
type Options struct {
	Timeout  time.Duration // waiting for the file lock; never zero (bbolt would wait forever)
	ReadOnly bool
}

// DB is the agent's database. The file is opened when a transaction needs it and closed
// once no transaction has used it for holdIdle (handle.go), so a long install, health check
// or network wait never keeps `ota-agent status` waiting on the lock, while a burst of
// transactions (one check's local steps) shares one open.
type DB struct {
	root *os.Root
	name string // relative to root
	path string // for messages
	opts Options
	// Rebuilt is set when the file was corrupt, moved aside, and a new one made: the caller
	// must rebuild it from the slot manifests. Damage says what was wrong with it.
	Rebuilt bool
	Damage  string
	temp    string // OpenTemp's directory
	h       *handle
	tx      *bolt.Tx // inside Batch
}

// Open opens or creates path. A file bbolt cannot open as a database (zero-filled or torn by
// a power cut, bad meta pages, truncated), that fails its consistency check, or that makes
// bbolt panic is moved aside as path.corrupt-<unix time> (the newest keepCorrupt are kept
// for forensics) and replaced by an empty database: Rebuilt and Damage tell the caller to
// rebuild it from the slot manifests. Errors of the file system itself (permissions, I/O, a
// read-only mount) and a lock held elsewhere are returned as they are.
//
// The file is name inside root (the state directory, opened once): a link planted at its name
// is refused like any other damage and never followed.
func Open(root *os.Root, name string, o Options) (*DB, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	path := filepath.Join(root.Name(), name)
	db := &DB{root: root, name: name, path: path, opts: o, h: &handle{}}
	if fi, err := root.Lstat(name); err != nil && (o.ReadOnly || !errors.Is(err, os.ErrNotExist)) {
		return nil, err
	} else if err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("database %s is not a regular file (%s); remove it and run a check to rebuild it", path, fi.Mode().Type())
	} else if err == nil && o.ReadOnly && fi.Size() == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrDamaged, path)
	}
	b, err := db.open()
	var damage error
	switch {
	case err == nil:
		id, known := db.fileID()
		if known && checkedRecently(db.path, id) {
			db.hold(b) // unchanged since this process found it consistent
		} else if damage = check(b); damage == nil {
			db.hold(b) // the transactions that follow (init, the caller's reads) use it
			if known {
				checked.Store(db.path, passed{id, time.Now()})
			}
		} else {
			b.Close()
		}
	case corrupt(err):
		damage = err
	default:
		return nil, err
	}
	if damage != nil {
		if o.ReadOnly {
			return nil, fmt.Errorf("%w: %s is corrupt (%v); a check rebuilds it", ErrDamaged, path, damage)
		}
		if err := db.moveAside(); err != nil {
			return nil, fmt.Errorf("database %s is corrupt (%v) and could not be moved aside: %w", path, damage, err)
		}
		db.Rebuilt, db.Damage = true, damage.Error()
	}
	if o.ReadOnly {
		return db, nil
	}
	return db, db.init()
}

// A daemon opens the database for every poll: the consistency check (every page read) runs
// when the file is new to this process, has changed since it last passed (a write, another
// process's, or damage, changes its size or time), or passed over recheckEvery ago.
const recheckEvery = time.Hour

type fileID struct {
	dev, ino, size uint64
	mtime          int64
}

// passed is the file a path held when it last passed the check, and when.
type passed struct {
	id fileID
	at time.Time
}

var checked sync.Map // path → passed

func checkedRecently(path string, id fileID) bool {
	p, ok := checked.Load(path)
	return ok && p.(passed).id == id && time.Since(p.(passed).at) < recheckEvery
}

func (d *DB) fileID() (fileID, bool) {
	fi, err := d.root.Lstat(d.name)
	if err != nil {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: uint64(st.Size), mtime: fi.ModTime().UnixNano()}, true
}

// keepCorrupt is how many damaged databases are kept beside the new one.
const keepCorrupt = 3

func (d *DB) moveAside() error {
	aside := fmt.Sprintf("%s.corrupt-%d", d.name, time.Now().UnixNano())
	if err := d.root.Rename(d.name, aside); err != nil {
		return err
	}
	dir, err := d.root.Open(filepath.Dir(d.name))
	if err != nil {
		return err
	}
	defer dir.Close()
	names, _ := dir.Readdirnames(-1)
	var old []string
	for _, n := range names {
		if strings.HasPrefix(n, filepath.Base(d.name)+".corrupt-") {
			old = append(old, n)
		}
	}
	sort.Strings(old) // same-length decimal timestamps: oldest first
	for len(old) > keepCorrupt {
		d.root.Remove(filepath.Join(filepath.Dir(d.name), old[0]))
		old = old[1:]
	}
	return dir.Sync()
}

// errPanic marks a panic inside bbolt: only a damaged file makes it panic.
var errPanic = errors.New("bbolt panicked")

// corrupt tells a damaged file from a file system or locking problem.
func corrupt(err error) bool {
	var errno syscall.Errno
	switch {
	case errors.Is(err, ErrLocked), errors.As(err, &errno):
		return false
	}
	return true // ErrInvalid, ErrVersionMismatch, ErrChecksum, errPanic, size and page errors
}

// view and update run one transaction: on the transaction of a Batch, or on the held handle.
func (d *DB) view(fn func(*bolt.Tx) error) error {
	if d.tx != nil {
		return fn(d.tx)
	}
	b, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.release()
	return b.View(fn)
}

func (d *DB) update(fn func(*bolt.Tx) error) error {
	if d.opts.ReadOnly {
		return fmt.Errorf("database %s is open read-only", d.path)
	}
	if d.tx != nil {
		return fn(d.tx)
	}
	b, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.release()
	return b.Update(fn)
}

// Batch runs fn with a DB whose every read and write is one write transaction: one commit
// (two fdatasyncs) for all of them, and none of them if fn fails. fn must not keep the DB
// it is given.
func (d *DB) Batch(fn func(*DB) error) error {
	return d.update(func(tx *bolt.Tx) error {
		in := *d
		in.tx = tx
		return fn(&in)
	})
}

// open opens the file through the root, so a link at its name is never followed out.
func (d *DB) open() (b *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("open %s: %w: %v", d.path, errPanic, r)
		}
	}()
	openFile := func(_ string, flag int, mode os.FileMode) (*os.File, error) {
		return d.root.OpenFile(d.name, flag, mode)
	}
	b, err = bolt.Open(d.path, 0o600, &bolt.Options{Timeout: d.opts.Timeout, ReadOnly: d.opts.ReadOnly, OpenFile: openFile})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (waited %v)", d.path, ErrLocked, d.opts.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.path, err)
	}
	return b, nil
}

// check runs bbolt's consistency check, turning a panic on a corrupt page into an error.
func check(b *bolt.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic while checking: %v", r)
		}
	}()
	return b.View(func(tx *bolt.Tx) error {
		var first error
		for e := range tx.Check() { // drain: the checker goroutine sends every error
			if first == nil {
				first = e
			}
		}
		return first
	})
}

// init creates the buckets once (and brings an older schema to this one); an initialised
// file is not written to (flash wear, and a
// check that changes nothing leaves the file byte-identical).
func (d *DB) init() error {
	ready := false
	d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAgent)
		ready = b != nil && string(b.Get(keySchema)) == schemaVersion &&
			tx.Bucket(bucketRefused) != nil && tx.Bucket(bucketDownloads) != nil && tx.Bucket(bucketModes) != nil
		return nil
	})
	if ready {
		return nil
	}
	return d.update(func(tx *bolt.Tx) error {
		if err := migrate(tx); err != nil {
			return fmt.Errorf("%s: migrate to schema %s: %w", d.path, schemaVersion, err)
		}
		for _, name := range [][]byte{bucketAgent, bucketRefused, bucketDownloads, bucketModes} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketAgent).Put(keySchema, []byte(schemaVersion))
	})
}

// OpenTemp makes an empty database in a new temporary directory outside any state
// directory (a dry run before the first install, a view rebuilt from the slot manifests);
// Close removes it.
func OpenTemp() (*DB, error) {
	dir, err := os.MkdirTemp("", "ota-agent-db-")
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d, err := Open(root, "agent.db", Options{Timeout: time.Second})
	if err != nil {
		root.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	d.temp = dir
	return d, nil
}

// Close ends the use of the database: the held handle is closed (a later transaction opens
// it again); a temporary one is removed.
func (d *DB) Close() error {
	d.drop()
	if d.temp == "" {
		return nil
	}
	d.root.Close()
	return os.RemoveAll(d.temp)
}

// Check runs the consistency check (tests call it after every change).
func (d *DB) Check() error {
	b, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.release()
	return check(b)
}
