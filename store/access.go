package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The records: one accessor pair per key of keys.go.

func get[T any](d *DB, bucket, key []byte) (*T, error) {
	var out *T
	err := d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		raw := b.Get(key)
		if raw == nil {
			return nil
		}
		out = new(T)
		return json.Unmarshal(raw, out)
	})
	return out, err
}

func put(tx *bolt.Tx, bucket, key []byte, v any) error {
	if v == nil {
		return tx.Bucket(bucket).Delete(key)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, raw)
}

// State returns the active generation, nil when nothing was ever installed.
func (d *DB) State() (*State, error) { return get[State](d, bucketAgent, keyState) }

// Journal returns the update in progress (nil: none).
func (d *DB) Journal() (*Journal, error) { return get[Journal](d, bucketAgent, keyJournal) }

// SetJournal writes the update's next step (nil: nothing in progress).
func (d *DB) SetJournal(j *Journal) error {
	return d.update(func(tx *bolt.Tx) error {
		if j == nil {
			return put(tx, bucketAgent, keyJournal, nil)
		}
		return put(tx, bucketAgent, keyJournal, j)
	})
}

// LastCheck returns the last check's record.
func (d *DB) LastCheck() (*CheckRecord, error) { return get[CheckRecord](d, bucketAgent, keyLastCheck) }

// SetState records s as active (nil: nothing installed).
func (d *DB) SetState(s *State) error {
	return d.update(func(tx *bolt.Tx) error {
		if s == nil {
			return put(tx, bucketAgent, keyState, nil)
		}
		return put(tx, bucketAgent, keyState, s)
	})
}

// ErrStateChanged: the active generation is not the one a change was meant for.
var ErrStateChanged = errors.New("the active generation changed meanwhile")

// MarkDamaged marks apps of generation n damaged (app → what is wrong), in one transaction
// and only while n is the active generation.
func (d *DB) MarkDamaged(n int64, damaged map[string]string) error {
	return d.update(func(tx *bolt.Tx) error {
		var s State
		raw := tx.Bucket(bucketAgent).Get(keyState)
		if raw == nil {
			return ErrStateChanged
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		if s.N != n {
			return fmt.Errorf("%w (generation %d, not %d): verify again", ErrStateChanged, s.N, n)
		}
		if s.Damaged == nil {
			s.Damaged = map[string]string{}
		}
		maps.Copy(s.Damaged, damaged)
		return put(tx, bucketAgent, keyState, s)
	})
}

// RecordCheck stores the last check's outcome.
func (d *DB) RecordCheck(c CheckRecord) error {
	return d.update(func(tx *bolt.Tx) error { return put(tx, bucketAgent, keyLastCheck, c) })
}

// Progress returns the resume record of a download.
func (d *DB) Progress(name string) (*Progress, error) {
	return get[Progress](d, bucketDownloads, []byte(name))
}

// Downloads returns every resume record by name.
func (d *DB) Downloads() (map[string]Progress, error) {
	out := map[string]Progress{}
	err := d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDownloads)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var p Progress
			if json.Unmarshal(v, &p) == nil {
				out[string(k)] = p
			}
			return nil
		})
	})
	return out, err
}

// SetProgress stores (or with nil, clears) the resume record of a download.
func (d *DB) SetProgress(name string, p *Progress) error {
	return d.update(func(tx *bolt.Tx) error {
		if p == nil {
			return put(tx, bucketDownloads, []byte(name), nil)
		}
		return put(tx, bucketDownloads, []byte(name), p)
	})
}

// Mode returns the payload mode learnt for a server URL ("" when none).
func (d *DB) Mode(server string) (string, error) {
	var m string
	err := d.view(func(tx *bolt.Tx) error {
		m = string(tx.Bucket(bucketModes).Get([]byte(server)))
		return nil
	})
	return m, err
}

// SetMode remembers the payload mode for a server URL.
func (d *DB) SetMode(server, mode string) error {
	return d.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketModes).Put([]byte(server), []byte(mode)) })
}

// TimeFloor is the newest time the agent has trusted; the clock is never taken to be earlier.
func (d *DB) TimeFloor() (time.Time, error) {
	var t time.Time
	err := d.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketAgent).Get(keyTimeFloor)
		if raw != nil {
			var s int64
			fmt.Sscan(string(raw), &s)
			t = time.Unix(s, 0)
		}
		return nil
	})
	return t, err
}

// RaiseTimeFloor moves the floor up to t (never down).
func (d *DB) RaiseTimeFloor(t time.Time) error {
	return d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAgent)
		var cur int64
		if raw := b.Get(keyTimeFloor); raw != nil {
			fmt.Sscan(string(raw), &cur)
		}
		if t.Unix() <= cur {
			return nil
		}
		return b.Put(keyTimeFloor, []byte(fmt.Sprint(t.Unix())))
	})
}

// LastVerify returns the last re-verification of the active slot.
func (d *DB) LastVerify() (*VerifyRecord, error) { return get[VerifyRecord](d, bucketAgent, keyVerify) }

// RecordVerify stores a re-verification's outcome.
func (d *DB) RecordVerify(v VerifyRecord) error {
	return d.update(func(tx *bolt.Tx) error { return put(tx, bucketAgent, keyVerify, v) })
}

// OS returns the partition-slot record (nil before the first OS install).
func (d *DB) OS() (*OSState, error) { return get[OSState](d, bucketAgent, keyOS) }

// SetOS stores the partition-slot record.
func (d *DB) SetOS(o *OSState) error {
	return d.update(func(tx *bolt.Tx) error { return put(tx, bucketAgent, keyOS, o) })
}

// Trust returns what the agent learnt about whom to trust (nil: nothing yet).
func (d *DB) Trust() (*Trust, error) { return get[Trust](d, bucketAgent, keyTrust) }

// SetTrust stores it.
func (d *DB) SetTrust(t *Trust) error {
	return d.update(func(tx *bolt.Tx) error { return put(tx, bucketAgent, keyTrust, t) })
}

// Counters returns the running totals (zero before the first check).
func (d *DB) Counters() (Counters, error) {
	c, err := get[Counters](d, bucketAgent, keyCounters)
	if err != nil || c == nil {
		return Counters{}, err
	}
	return *c, nil
}

// Count adds to the running totals in one transaction.
func (d *DB) Count(add func(*Counters)) error {
	return d.update(func(tx *bolt.Tx) error {
		var c Counters
		if raw := tx.Bucket(bucketAgent).Get(keyCounters); raw != nil {
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
		}
		add(&c)
		return put(tx, bucketAgent, keyCounters, c)
	})
}

// Staged returns the generation sealed and waiting for an install window (nil: none).
func (d *DB) Staged() (*Generation, error) { return get[Generation](d, bucketAgent, keyStaged) }

// SetStaged records (nil: forgets) the generation waiting for an install window.
func (d *DB) SetStaged(g *Generation) error {
	return d.update(func(tx *bolt.Tx) error {
		if g == nil {
			return put(tx, bucketAgent, keyStaged, nil)
		}
		return put(tx, bucketAgent, keyStaged, g)
	})
}

// maxChunkLists bounds the chunk lists kept (one per file the device held recently).
const maxChunkLists = 16

// ChunkList returns the cached chunk list of the file with this SHA-256 (nil: none).
func (d *DB) ChunkList(sha256 string) ([]byte, error) {
	var out []byte
	err := d.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketChunks); b != nil {
			out = append([]byte(nil), b.Get([]byte(sha256))...)
		}
		return nil
	})
	if len(out) == 0 {
		return nil, err
	}
	return out, err
}

// SetChunkList caches a file's chunk list, dropping others beyond maxChunkLists.
func (d *DB) SetChunkList(sha256 string, list []byte) error {
	return d.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketChunks)
		if err != nil {
			return err
		}
		if b.Stats().KeyN >= maxChunkLists {
			k, _ := b.Cursor().First()
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return b.Put([]byte(sha256), list)
	})
}
