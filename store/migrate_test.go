package store

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeV1 makes a schema-1 file: the records as that schema kept them.
func writeV1(t *testing.T, path string, records map[string]any) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketAgent, bucketRefused, bucketDownloads, bucketModes} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		ag := tx.Bucket(bucketAgent)
		ag.Put(keySchema, []byte("1"))
		for k, v := range records {
			raw, _ := json.Marshal(v)
			ag.Put([]byte(k), raw)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A device whose agent is updated in the middle of an update resumes it: schema 1's pending
// switch, trial and units to restart become the journal; the state keeps the rest.
func TestMigrateSchema1(t *testing.T) {
	gen := map[string]any{"n": 2, "slot": "b", "apps": map[string]any{"x": map[string]any{"version": "2", "md5": "m2"}}}
	for _, c := range []struct {
		name    string
		records map[string]any
		want    Journal
	}{
		{"pending switch", map[string]any{"pending": gen, "machine": map[string]any{"state": "pending"}, "state": map[string]any{"n": 1, "slot": "a", "status": "committed"}}, Journal{Step: StepSwitch}},
		{"trial", map[string]any{"state": map[string]any{"n": 2, "slot": "b", "status": "trial", "trials": 1}}, Journal{Step: StepTrial, Judge: true, Trials: 1}},
		{"units to restart", map[string]any{"state": map[string]any{"n": 2, "slot": "b", "status": "trial", "restart": []string{"x.service"}}}, Journal{Step: StepRestartUnits, Judge: true, Restart: []string{"x.service"}}},
		{"committed", map[string]any{"state": map[string]any{"n": 2, "slot": "b", "status": "committed"}}, Journal{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.db")
			writeV1(t, path, c.records)
			db := openTest(t, path)
			j, err := db.Journal()
			if err != nil {
				t.Fatal(err)
			}
			if c.want.Step == "" {
				if j != nil {
					t.Fatalf("journal %+v, want none", j)
				}
			} else if j == nil || j.Step != c.want.Step || j.Judge != c.want.Judge || j.Trials != c.want.Trials || len(j.Restart) != len(c.want.Restart) {
				t.Fatalf("journal %+v, want %+v", j, c.want)
			}
			if c.want.Step == StepSwitch && (j.Next == nil || j.Next.N != 2 || j.Next.Apps["x"].MD5 != "m2") {
				t.Fatalf("the pending generation is not the journal's: %+v", j.Next)
			}
			s, err := db.State()
			if err != nil || s == nil || s.Status == "" {
				t.Fatalf("state %+v %v", s, err)
			}
			db.view(func(tx *bolt.Tx) error {
				ag := tx.Bucket(bucketAgent)
				if ag.Get(keyPendingV1) != nil || ag.Get(keyMachineV1) != nil || string(ag.Get(keySchema)) != schemaVersion {
					t.Errorf("schema 1's keys left, or schema %q", ag.Get(keySchema))
				}
				return nil
			})
		})
	}
}
