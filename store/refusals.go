package store

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// What keeps a release out: refusals (by MD5), failed attempts and failed receipts
// (install.max_attempts), and the releases pins shadow.

// Refuse remembers that the release with this md5 must not be installed again.
func (d *DB) Refuse(md5 string, r Refusal) error {
	return d.update(func(tx *bolt.Tx) error { return put(tx, bucketRefused, []byte(md5), r) })
}

// Refused returns why md5 is refused, or nil.
func (d *DB) Refused(md5 string) (*Refusal, error) {
	return get[Refusal](d, bucketRefused, []byte(md5))
}

// Refusals lists every refused release by md5.
func (d *DB) Refusals() (map[string]Refusal, error) {
	out := map[string]Refusal{}
	err := d.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRefused).ForEach(func(k, v []byte) error {
			var r Refusal
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}

// ForgetRefusals drops refusals whose md5 is not in keep: the server offers something else.
func (d *DB) ForgetRefusals(app string, keep string) error {
	return d.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRefused)
		var drop [][]byte
		b.ForEach(func(k, v []byte) error {
			var r Refusal
			if json.Unmarshal(v, &r) == nil && r.App == app && string(k) != keep {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Unrefuse drops the refusals of these md5s (taken back by hand).
func (d *DB) Unrefuse(md5s ...string) error {
	return d.update(func(tx *bolt.Tx) error {
		for _, m := range md5s {
			if err := tx.Bucket(bucketRefused).Delete([]byte(m)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Receipt counts one more arrival of bytes (by their SHA-256) that failed verification as the
// release md5, and returns how many times these same bytes arrived: a damaged transfer
// differs each time, a file the CDN really serves does not. At most maxReceipts different
// receipts are kept per release.
func (d *DB) Receipt(md5, sha256 string) (int, error) {
	n := 0
	err := d.update(func(tx *bolt.Tx) error {
		m := map[string]map[string]int{}
		if raw := tx.Bucket(bucketAgent).Get(keyReceipts); raw != nil {
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
		}
		r := m[md5]
		if r == nil {
			r = map[string]int{}
			m[md5] = r
		}
		if _, ok := r[sha256]; !ok && len(r) >= maxReceipts {
			for k := range r { // forget one: damaged transfers are unique anyway
				delete(r, k)
				break
			}
		}
		r[sha256]++
		n = r[sha256]
		return put(tx, bucketAgent, keyReceipts, m)
	})
	return n, err
}

// maxReceipts bounds the failed receipts remembered per release.
const maxReceipts = 8

// ForgetReceipts drops what Receipt remembered of these releases.
func (d *DB) ForgetReceipts(md5s ...string) error {
	return forget[map[string]int](d, keyReceipts, md5s)
}

// Attempt counts one more failed install of the release with this md5 and returns the count.
func (d *DB) Attempt(md5 string) (int, error) {
	n := 0
	err := d.update(func(tx *bolt.Tx) error {
		m := map[string]int{}
		if raw := tx.Bucket(bucketAgent).Get(keyAttempts); raw != nil {
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
		}
		m[md5]++
		n = m[md5]
		return put(tx, bucketAgent, keyAttempts, m)
	})
	return n, err
}

// ForgetAttempts drops the failed-install counts of these md5s (installed, or refused).
func (d *DB) ForgetAttempts(md5s ...string) error {
	return forget[int](d, keyAttempts, md5s)
}

// forget deletes keys from the md5-keyed record at key (a JSON object of V), and the
// record itself once it is empty.
func forget[V any](d *DB, key []byte, md5s []string) error {
	return d.update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketAgent).Get(key)
		if raw == nil {
			return nil
		}
		m := map[string]V{}
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		for _, k := range md5s {
			delete(m, k)
		}
		if len(m) == 0 {
			return put(tx, bucketAgent, key, nil)
		}
		return put(tx, bucketAgent, key, m)
	})
}

// Shadowed returns the releases shadowed by pins, by MD5.
func (d *DB) Shadowed() (map[string]Shadow, error) {
	m, err := get[map[string]Shadow](d, bucketAgent, keyShadowed)
	if err != nil || m == nil {
		return map[string]Shadow{}, err
	}
	return *m, nil
}

// SetShadowed replaces the releases shadowed by pins (empty: none).
func (d *DB) SetShadowed(m map[string]Shadow) error {
	return d.update(func(tx *bolt.Tx) error {
		if len(m) == 0 {
			return put(tx, bucketAgent, keyShadowed, nil)
		}
		return put(tx, bucketAgent, keyShadowed, m)
	})
}
