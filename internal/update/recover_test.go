package update

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/health"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/store"
)

// device is a state directory whose slot a holds generation 1 (committed) and slot b
// generation 2, switched to and on trial: the moment a power cut during a trial leaves.
func device(t *testing.T) (*Engine, *store.DB) {
	t.Helper()
	dir := t.TempDir()
	slots, err := installer.OpenState("", dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slots.Close() })
	gens := map[string]*store.Generation{}
	for n, s := range []string{"a", "b"} {
		st, err := slots.Stage(s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := st.WriteFile("scoreboard", strings.NewReader("scoreboard of generation "+s))
		if err != nil {
			t.Fatal(err)
		}
		g := &store.Generation{N: int64(n + 1), Slot: s, Apps: map[string]store.App{"scoreboard": {Version: s, MD5: d.MD5, SHA256: d.SHA256, Size: d.Size}}}
		if err := st.Seal(installer.Manifest{Generation: g.N, Apps: g.Apps}); err != nil {
			t.Fatal(err)
		}
		gens[s] = g
	}
	if err := slots.Switch("b"); err != nil {
		t.Fatal(err)
	}
	root, err := slots.Root()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(root, "agent.db", store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Now()
	db.SetState(&store.State{Generation: *gens["b"], Status: store.StatusTrial, Since: now, Previous: &store.Reference{N: 1, Slot: "a"}})
	cfg := &config.Config{}
	cfg.Hooks.MaxTrials = 3
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &Engine{Cfg: cfg, Log: log, Slots: slots, Clock: trust.NewClock(time.Now, time.Time{}), Status: func(string) {},
		Health: health.Checker{Cfg: cfg, Log: log, Status: func(string) {}}}
	return a, db
}

// Recover is one switch over the journal: a run interrupted before its slot was sealed is
// discarded (the staging directory with it); a trial interrupted counts one more start and
// waits for Resume; at hooks.max_trials the generation is rolled back through switch and
// record, and its release refused; a step it does not know is discarded, not guessed.
func TestRecoverFromTheJournal(t *testing.T) {
	ctx := context.Background()
	t.Run("before the seal", func(t *testing.T) {
		a, db := device(t)
		os.MkdirAll(filepath.Join(a.Slots.Dir, "slots", "a.tmp"), 0o755)
		db.SetJournal(&store.Journal{Step: string(Verify)})
		if err := a.Recover(ctx, db); err != nil {
			t.Fatal(err)
		}
		if rec, _ := db.Journal(); rec != nil {
			t.Fatalf("journal kept: %+v", rec)
		}
		if _, err := os.Stat(filepath.Join(a.Slots.Dir, "slots", "a.tmp")); !os.IsNotExist(err) {
			t.Fatalf("staging directory kept: %v", err)
		}
		if s, _ := db.State(); s.N != 2 || s.Slot != "b" {
			t.Fatalf("state changed: %+v", s)
		}
	})
	t.Run("a trial interrupted", func(t *testing.T) {
		a, db := device(t)
		db.SetJournal(&store.Journal{Step: string(Trial), Judge: true})
		if err := a.Recover(ctx, db); err != nil {
			t.Fatal(err)
		}
		if rec, _ := db.Journal(); rec == nil || rec.Step != string(Trial) || rec.Trials != 1 {
			t.Fatalf("journal %+v, want the trial with one start counted", rec)
		}
		if active, _ := a.Slots.Active(); active != "b" {
			t.Fatalf("active slot %s", active)
		}
	})
	t.Run("the last trial", func(t *testing.T) {
		a, db := device(t)
		db.SetJournal(&store.Journal{Step: string(Trial), Judge: true, Trials: 2})
		if err := a.Recover(ctx, db); err != nil {
			t.Fatal(err)
		}
		if active, _ := a.Slots.Active(); active != "a" {
			t.Fatalf("active slot %s, want a (rolled back)", active)
		}
		s, _ := db.State()
		if s == nil || s.Slot != "a" || s.Apps["scoreboard"].Version != "a" {
			t.Fatalf("state %+v, want generation a's apps", s)
		}
		refused, _ := db.Refusals()
		if len(refused) != 1 {
			t.Fatalf("refusals %v, want the rolled-back release", refused)
		}
		for _, r := range refused {
			if !strings.Contains(r.Reason, "restarted 3 time(s) while on trial") {
				t.Fatalf("refusal reason %q", r.Reason)
			}
		}
	})
	t.Run("an unknown step", func(t *testing.T) {
		a, db := device(t)
		db.SetJournal(&store.Journal{Step: "teleport"})
		if err := a.Recover(ctx, db); err != nil {
			t.Fatal(err)
		}
		if rec, _ := db.Journal(); rec != nil {
			t.Fatalf("journal kept: %+v", rec)
		}
		if active, _ := a.Slots.Active(); active != "b" {
			t.Fatalf("active slot %s", active)
		}
	})
}
