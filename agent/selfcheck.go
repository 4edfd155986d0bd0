package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/store"
)

// Self-repair (verify.interval): the daemon re-reads the active slot at a bounded rate and
// compares it with the database. An app whose bytes differ is marked damaged and its MD5 is
// no longer claimed in If-None-Match, so the next check fetches it again; a manifest that
// differs (lost, hand-edited) is rewritten from the database, whose files it was checked
// against; a file the database does not know is removed from the slot.

// slotProblems says how the active slot differs from the database record s: by app (files
// re-hashed, each read through read when set) and for the manifest ("" when it agrees).
func (a *Agent) slotProblems(s *store.State, read func(io.Reader) io.Reader) (map[string]string, string, error) {
	active, err := a.Slots.Active()
	if err != nil {
		return nil, "", err
	}
	if active != s.Slot {
		return nil, "", fmt.Errorf("current points to slot %s but the database says slot %s", active, s.Slot)
	}
	files, err := a.Slots.Check(active, s.Apps, read)
	if err != nil {
		return nil, "", err
	}
	manifest := ""
	switch m, err := a.Slots.Manifest(active); {
	case err != nil:
		manifest = err.Error()
	case m.Generation != s.N || !maps.Equal(m.Apps, s.Apps):
		manifest = fmt.Sprintf("slot %s manifest (generation %d, %d apps) differs from the database (generation %d, %d apps): edited by hand?", active, m.Generation, len(m.Apps), s.N, len(s.Apps))
	}
	return files, manifest, nil
}

// VerifyActive re-hashes the active slot and reads its manifest, against the database: the
// line `verify` prints, or an error naming every difference. Apps of the database whose
// bytes differ are returned as damaged (app → what is wrong).
func (a *Agent) VerifyActive(s *store.State) (string, map[string]string, error) {
	files, manifest, err := a.slotProblems(s, nil)
	if err != nil {
		return "", nil, err
	}
	problems := describe(files)
	if manifest != "" {
		problems = append(problems, manifest)
	}
	damaged := maps.Clone(files)
	maps.DeleteFunc(damaged, func(app, _ string) bool { _, ours := s.Apps[app]; return !ours })
	if len(problems) > 0 {
		return "", damaged, fmt.Errorf("slot %s differs from the database: %s", s.Slot, strings.Join(problems, "; "))
	}
	return fmt.Sprintf("slot %s, generation %d, %d apps match the database and the manifest", s.Slot, s.N, len(s.Apps)), nil, nil
}

func describe(files map[string]string) []string {
	var out []string
	for app, why := range files {
		out = append(out, app+": "+why)
	}
	sort.Strings(out)
	return out
}

// reverify runs the re-verification when verify.interval has passed since the last one (or
// the clock went back), and repairs what it can.
func (a *Agent) reverify(ctx context.Context, db *store.DB) error {
	if a.Cfg.Verify.Interval <= 0 {
		return nil
	}
	now := a.now(db)
	if last, err := db.LastVerify(); err != nil {
		return err
	} else if last != nil && now.After(last.Time) && now.Sub(last.Time) < a.Cfg.Verify.Interval {
		return nil
	}
	s, err := db.State()
	if err != nil || s == nil || s.Status != store.StatusCommitted {
		return err // nothing installed, or on trial: the health hook judges it
	}
	a.Status(fmt.Sprintf("verifying slot %s", s.Slot))
	start := time.Now()
	files, manifest, err := a.slotProblems(s, func(r io.Reader) io.Reader {
		return &paced{ctx: ctx, r: r, rate: int64(a.Cfg.Verify.Rate), start: time.Now()}
	})
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err() // stopped half-way: nothing is concluded
	}
	rec := store.VerifyRecord{Time: now, Slot: s.Slot, N: s.N, Duration: time.Since(start), Problems: describe(files)}
	if manifest != "" {
		rec.Problems = append(rec.Problems, manifest)
	}
	if len(rec.Problems) == 0 {
		a.Log.Info("verified the active slot", "slot", s.Slot, "generation", s.N, "apps", len(s.Apps), "duration", rec.Duration.Round(time.Millisecond))
		return db.RecordVerify(rec)
	}
	a.Log.Error("verify: the active slot differs from the database", "slot", s.Slot, "generation", s.N, "problems", strings.Join(rec.Problems, "; "))
	for _, app := range slices.Sorted(maps.Keys(files)) {
		if _, ours := s.Apps[app]; !ours {
			if err := a.Slots.RemoveStray(s.Slot, app); err != nil {
				return err
			}
			rec.Repaired = append(rec.Repaired, app+": not in the database, removed from the slot")
			continue
		}
		if s.Damaged == nil {
			s.Damaged = map[string]string{}
		}
		s.Damaged[app] = files[app]
		rec.Repaired = append(rec.Repaired, app+": no longer claimed; the next check fetches it again")
	}
	if manifest != "" {
		if err := a.Slots.WriteManifest(s.Slot, &installer.Manifest{Generation: s.N, Apps: s.Apps}); err != nil {
			return err
		}
		rec.Repaired = append(rec.Repaired, "manifest rewritten from the database")
	}
	if len(s.Damaged) > 0 {
		if err := db.SetState(s); err != nil {
			return err
		}
	}
	a.Log.Warn("verify: repaired", "what", strings.Join(rec.Repaired, "; "))
	return db.RecordVerify(rec)
}

// paced reads at most rate bytes a second on average, so a re-verification never competes
// with the device's own work for the disk.
type paced struct {
	ctx   context.Context
	r     io.Reader
	rate  int64
	start time.Time
	n     int64
}

func (p *paced) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	if p.rate > 0 && int64(len(b)) > p.rate/8 {
		b = b[:max(p.rate/8, 512)] // steps of an eighth of a second at most
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.rate > 0 {
		due := time.Duration(float64(p.n) / float64(p.rate) * float64(time.Second))
		if wait := due - time.Since(p.start); wait > 0 {
			select {
			case <-time.After(wait):
			case <-p.ctx.Done():
				return n, p.ctx.Err()
			}
		}
	}
	return n, err
}
