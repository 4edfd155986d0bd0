package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// Deferral is a release a phased rollout keeps from this device for now (packaging.Phase):
// its MD5 goes out in If-None-Match until Turn, so the server leaves it out of the answer and
// the device keeps sharing its class's cache entries; at Turn the device asks without it.
type Deferral struct {
	App     string    `json:"app"`
	Version string    `json:"version"`
	Channel string    `json:"channel,omitempty"`
	Turn    time.Time `json:"turn,omitzero"` // when the ramp reaches this device (zero: halted)
	Halted  bool      `json:"halted,omitempty"`
	Level   int64     `json:"level"` // the ramp's share of the fleet when last seen, millionths
	Since   time.Time `json:"since"` // first deferred
}

// Pending says whether the device still waits for its turn at now (its MD5 goes out in
// If-None-Match). A halted rollout is asked about at every check: a resume must show.
func (d Deferral) Pending(now time.Time) bool { return !d.Halted && now.Before(d.Turn) }

// Deferred returns the releases deferred by phased rollouts, by MD5.
func (d *DB) Deferred() (map[string]Deferral, error) {
	m, err := get[map[string]Deferral](d, bucketAgent, keyDeferred)
	if err != nil || m == nil {
		return map[string]Deferral{}, err
	}
	return *m, nil
}

// SetDeferred replaces the releases deferred by phased rollouts (empty: none).
func (d *DB) SetDeferred(m map[string]Deferral) error {
	return d.update(func(tx *bolt.Tx) error {
		if len(m) == 0 {
			return put(tx, bucketAgent, keyDeferred, nil)
		}
		return put(tx, bucketAgent, keyDeferred, m)
	})
}
