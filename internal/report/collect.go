package report

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ota-agent/ota-agent/store"
)

// Observed is what the agent knows besides the database: the last check (agent.db or the
// runtime record), whether trust is stale (and since when), when a staged generation
// switches.
type Observed struct {
	Check       *store.CheckRecord
	StaleSince  *time.Time
	StagedUntil time.Time
}

// Collect derives the events of what db holds now and enqueues those not enqueued lately,
// in one transaction (store.Enqueue); it returns how many it added.
func (r *Reporter) Collect(db *store.DB, o Observed) (int, error) {
	evs, err := r.derive(db, o)
	if err != nil {
		return 0, err
	}
	ids, bodies := make([]string, len(evs)), make([][]byte, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
		if bodies[i], err = json.Marshal(e); err != nil {
			return 0, err
		}
	}
	if n, err := db.Unseen(ids); n == 0 || err != nil {
		return 0, err // nothing new: no write (a check that changed nothing syncs nothing)
	}
	added := 0
	err = db.Batch(func(db *store.DB) error {
		var err error
		added, err = db.Enqueue(ids, bodies, r.MaxEvents)
		r.step("report-recorded") // crash tests: written, not yet committed
		return err
	})
	return added, err
}

func (r *Reporter) step(name string) {
	if r.Step != nil {
		r.Step(name)
	}
}

// derive lists the outcomes db holds, each with the id that names it.
func (r *Reporter) derive(db *store.DB, o Observed) ([]Event, error) {
	var out []Event
	add := func(kind, what string, e Event) {
		e.ID, e.Kind = r.Device+"/"+kind+"/"+what, kind
		out = append(out, e)
	}
	s, err := db.State()
	if err != nil {
		return nil, err
	}
	refused, err := db.Refusals()
	if err != nil {
		return nil, err
	}
	if s != nil && s.Status == store.StatusCommitted {
		if s.Previous != nil && s.Previous.N > s.N { // a rollback made it active again: the releases it refused
			abandoned := map[string]string{}
			for _, x := range refused {
				if x.Reason == s.Reason {
					abandoned[x.App] = x.Version
				}
			}
			add(RolledBack, fmt.Sprint("g", s.Previous.N), Event{Time: s.Since, Generation: s.N, Slot: s.Slot, From: s.Previous.N, Reason: Clean(s.Reason), Apps: abandoned})
		} else {
			add(Installed, fmt.Sprint("g", s.N), Event{Time: s.Since, Generation: s.N, Slot: s.Slot, Apps: versions(s.Apps)})
		}
	}
	if osr, err := db.OS(); err == nil && osr != nil && osr.Current.MD5 != "" {
		add(Installed, "os-"+osr.Current.MD5+"-"+osr.Committed, Event{Time: o.now(), OSSlot: osr.Committed, Apps: map[string]string{osr.App: osr.Current.Version}})
	}
	if g, err := db.Staged(); err == nil && g != nil {
		e := Event{Time: o.now(), Generation: g.N, Slot: g.Slot, Apps: versions(g.Apps)}
		if !o.StagedUntil.IsZero() {
			e.Until = &o.StagedUntil
		}
		add(Staged, fmt.Sprint("g", g.N), e)
	}
	deferred, err := db.Deferred()
	if err != nil {
		return nil, err
	}
	for _, m := range sortedKeys(deferred) {
		d := deferred[m]
		e := Event{Time: d.Since, Apps: map[string]string{d.App: d.Version}, Halted: d.Halted, Percent: float64(d.Level) / 1e4}
		what := m + "-halted"
		if !d.Halted {
			e.Until, what = &d.Turn, fmt.Sprint(m, "-", d.Turn.Unix())
		}
		add(Deferred, what, e)
	}
	for _, m := range sortedKeys(refused) {
		x := refused[m]
		if x.App != "" {
			add(Refused, fmt.Sprint(m, "-", x.Time.Unix()), Event{Time: x.Time, Apps: map[string]string{x.App: x.Version}, Reason: Clean(x.Reason)})
		}
	}
	if c := o.Check; c != nil && c.Result == "failed" {
		add(Failed, fmt.Sprint(c.Time.UnixNano()), Event{Time: c.Time, Class: c.Class, Message: Clean(c.Error), Bytes: c.Bytes, Apps: c.Offered})
	}
	if o.StaleSince != nil {
		add(TrustStale, fmt.Sprint(o.StaleSince.Unix()), Event{Time: *o.StaleSince})
	}
	if v, err := db.LastVerify(); err == nil && v != nil && len(v.Problems) > 0 {
		add(Damaged, fmt.Sprint(v.Time.Unix()), Event{Time: v.Time, Slot: v.Slot, Generation: v.N, Problems: v.Problems})
		if len(v.Repaired) > 0 {
			add(Repaired, fmt.Sprint(v.Time.Unix()), Event{Time: v.Time, Slot: v.Slot, Generation: v.N, Problems: v.Repaired})
		}
	}
	return out, nil
}

func (o Observed) now() time.Time {
	if o.Check != nil {
		return o.Check.Time
	}
	return time.Now()
}

func versions(apps map[string]store.App) map[string]string {
	out := make(map[string]string, len(apps))
	for app, x := range apps {
		out[app] = x.Version
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
