package store

import (
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outbox of device reports (internal/report): events waiting to be posted, oldest
// first, bounded; what was dropped is counted and reported. An event is enqueued in one
// transaction with the record that its id has been seen, so a power cut either keeps both or
// neither, and the next collection finds the same event (with the same id) again.

// OutboxMeta is the outbox's bookkeeping.
type OutboxMeta struct {
	Seq      uint64    `json:"seq"`                // the last sequence number given
	Dropped  int64     `json:"dropped,omitempty"`  // events dropped for room and not yet reported
	Seen     []string  `json:"seen,omitempty"`     // ids enqueued lately, newest last (bounded)
	NextTry  time.Time `json:"next_try,omitzero"`  // no post before this (backoff)
	Failures int       `json:"failures,omitempty"` // posts failed in a row
}

// Queued is one event in the outbox.
type Queued struct {
	Seq  uint64
	Body []byte // the event's JSON
}

// maxSeen bounds the ids remembered as enqueued.
const maxSeen = 256

// Outbox returns the bookkeeping and the n oldest events.
func (d *DB) Outbox(n int) (OutboxMeta, []Queued, error) {
	var meta OutboxMeta
	var out []Queued
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		if meta, err = outboxMeta(tx); err != nil {
			return err
		}
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			out = append(out, Queued{Seq: binary.BigEndian.Uint64(k), Body: append([]byte(nil), v...)})
		}
		return nil
	})
	return meta, out, err
}

// Unseen counts the ids not enqueued lately (a read: a check with nothing new to report
// writes nothing).
func (d *DB) Unseen(ids []string) (int, error) {
	n := 0
	err := d.view(func(tx *bolt.Tx) error {
		meta, err := outboxMeta(tx)
		seen := map[string]bool{}
		for _, id := range meta.Seen {
			seen[id] = true
		}
		for _, id := range ids {
			if !seen[id] {
				n++
			}
		}
		return err
	})
	return n, err
}

// Enqueue adds the events (id → JSON, in order) whose ids were not enqueued lately, keeping
// at most limit events (the oldest dropped and counted), and returns how many it added.
func (d *DB) Enqueue(ids []string, bodies [][]byte, limit int) (int, error) {
	added := 0
	err := d.update(func(tx *bolt.Tx) error {
		meta, err := outboxMeta(tx)
		if err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketOutbox)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, id := range meta.Seen {
			seen[id] = true
		}
		for i, id := range ids {
			if seen[id] {
				meta.Seen = append(remove(meta.Seen, id), id) // still observed: kept in mind
				continue
			}
			meta.Seq++
			if err := b.Put(binary.BigEndian.AppendUint64(nil, meta.Seq), bodies[i]); err != nil {
				return err
			}
			seen[id], meta.Seen, added = true, append(meta.Seen, id), added+1
		}
		meta.Seen = meta.Seen[max(len(meta.Seen)-maxSeen, 0):]
		n, c := 0, b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		for ; n > limit; n-- {
			k, _ := b.Cursor().First()
			if err := b.Delete(k); err != nil {
				return err
			}
			meta.Dropped++
		}
		return put(tx, bucketAgent, keyOutbox, meta)
	})
	return added, err
}

func remove(ids []string, id string) []string {
	out := ids[:0]
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

func outboxMeta(tx *bolt.Tx) (OutboxMeta, error) {
	var meta OutboxMeta
	if raw := tx.Bucket(bucketAgent).Get(keyOutbox); raw != nil {
		return meta, json.Unmarshal(raw, &meta)
	}
	return meta, nil
}

// Posted removes the events up to seq (the receiver has them) and the dropped count that
// went with them, and clears the backoff.
func (d *DB) Posted(seq uint64, dropped int64) error {
	return d.update(func(tx *bolt.Tx) error {
		meta, err := outboxMeta(tx)
		if err != nil {
			return err
		}
		if b := tx.Bucket(bucketOutbox); b != nil {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.First() {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		meta.Dropped = max(meta.Dropped-dropped, 0)
		meta.NextTry, meta.Failures = time.Time{}, 0
		return put(tx, bucketAgent, keyOutbox, meta)
	})
}

// PostFailed records a failed post and when to try again.
func (d *DB) PostFailed(next time.Time) error {
	return d.update(func(tx *bolt.Tx) error {
		meta, err := outboxMeta(tx)
		if err != nil {
			return err
		}
		meta.NextTry, meta.Failures = next, meta.Failures+1
		return put(tx, bucketAgent, keyOutbox, meta)
	})
}
