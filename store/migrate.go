package store

import (
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Steps of the update machine that a schema-1 file can be in; the agent's machine has the
// same names (a test checks).
const (
	StepSwitch       = "switch"
	StepRestartUnits = "restart-units"
	StepTrial        = "trial"
)

// migrate brings a schema-1 file to schema 2 in tx: the pending switch, a trial and the
// units still to restart, which schema 1 kept in the state record and a key of their own,
// become the journal; the breadcrumb of the machine's state goes. A device whose agent is
// updated in the middle of an update resumes it.
func migrate(tx *bolt.Tx) error {
	b := tx.Bucket(bucketAgent)
	if b == nil || string(b.Get(keySchema)) != "1" {
		return nil
	}
	var j *Journal
	if raw := b.Get(keyState); raw != nil {
		var v1 struct {
			State
			Trials  int      `json:"trials"`
			Restart []string `json:"restart"`
		}
		if err := json.Unmarshal(raw, &v1); err != nil {
			return err
		}
		trial := v1.Status == StatusTrial
		switch {
		case len(v1.Restart) > 0:
			j = &Journal{Step: StepRestartUnits, Restart: v1.Restart, Judge: trial, Trials: v1.Trials}
		case trial:
			j = &Journal{Step: StepTrial, Judge: true, Trials: v1.Trials}
		}
		if err := put(tx, bucketAgent, keyState, v1.State); err != nil {
			return err
		}
	}
	if raw := b.Get(keyPendingV1); raw != nil {
		var g Generation
		if err := json.Unmarshal(raw, &g); err != nil {
			return err
		}
		j = &Journal{Step: StepSwitch, Next: &g} // a switch comes before the record's steps
	}
	for _, k := range [][]byte{keyPendingV1, keyMachineV1} {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	if j == nil {
		return nil
	}
	j.Since = time.Now()
	return put(tx, bucketAgent, keyJournal, j)
}
