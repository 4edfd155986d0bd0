package report

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/store"
	"github.com/ota-agent/ota-agent/testserver/reports"
)

// rig is a real bbolt file, the test server's receiver on loopback, and a reporter for them,
// on a clock the test moves.
type rig struct {
	db   *store.DB
	path string
	rcv  *reports.Receiver
	r    *Reporter
	now  time.Time
}

func newRig(t *testing.T, max int) *rig {
	t.Helper()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(root, "agent.db", store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(); root.Close() })
	g := &rig{db: db, path: filepath.Join(dir, "agent.db"), rcv: reports.New(), now: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv := httptest.NewServer(g.rcv)
	t.Cleanup(srv.Close)
	c, err := transport.NewHTTPClient(transport.ClientOptions{StallTimeout: 300 * time.Millisecond, HeaderTimeout: time.Second, LoopbackHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	g.r = &Reporter{URL: srv.URL + "/reports", HTTP: c, Device: "gw-1", Agent: "ota-agent/test", MaxEvents: max,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return g.now }}
	return g
}

// failCheck records a failed check at the rig's time (one new event each).
func (g *rig) failCheck(t *testing.T) Observed {
	t.Helper()
	g.now = g.now.Add(time.Minute)
	return Observed{Check: &store.CheckRecord{Time: g.now, Result: "failed", Class: "unavailable", Error: "GET https://cdn.example/fw/a_1?Signature=SECRET&Key-Pair-Id=K: stalled", Bytes: 12, Offered: map[string]string{"a": "1"}}}
}

// An outcome derived twice is enqueued once and posted once; what is posted carries no
// signed URL query; a post the receiver accepted twice (a cut before the outbox learnt it)
// is kept once by its id.
func TestEventsOnceAndClean(t *testing.T) {
	g := newRig(t, 100)
	o := g.failCheck(t)
	for range 2 {
		if _, err := g.r.Collect(g.db, o); err != nil {
			t.Fatal(err)
		}
	}
	meta, q, _ := g.db.Outbox(10)
	if len(q) != 1 || meta.Seq != 1 {
		t.Fatalf("enqueued %d events (seq %d), want 1", len(q), meta.Seq)
	}
	if err := g.r.Flush(context.Background(), g.db); err != nil {
		t.Fatal(err)
	}
	// the same batch again, as after a cut between the receiver's answer and Posted
	if _, err := g.r.post(context.Background(), Batch{V: 1, Device: "gw-1", Events: []json.RawMessage{q[0].Body}}); err != nil {
		t.Fatal(err)
	}
	v := g.rcv.Snapshot()
	if len(v.Events) != 1 || v.Dupes != 1 || strings.Contains(string(v.Events[0].Event), "SECRET") || !strings.Contains(string(v.Events[0].Event), `"error_class":"unavailable"`) {
		t.Fatalf("receiver holds %d events, %d duplicates: %s", len(v.Events), v.Dupes, v.Events)
	}
	if _, q, _ := g.db.Outbox(10); len(q) != 0 {
		t.Fatalf("%d events left after a good post", len(q))
	}
	before, _ := os.Stat(g.path)
	time.Sleep(20 * time.Millisecond)
	if n, err := g.r.Collect(g.db, o); n != 0 || err != nil {
		t.Fatalf("collected again: %d, %v", n, err)
	}
	g.r.Flush(context.Background(), g.db)
	if after, _ := os.Stat(g.path); !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("a check with nothing new to report wrote agent.db")
	}
}

// A receiver away for a week: the outbox stays bounded, the drops are counted and reported
// once it is back, posts back off instead of trying at every check, and a post to a receiver
// that drips its answer ends at the deadline (the agent's is server.stall_timeout), its
// events kept.
func TestReceiverAwayForAWeek(t *testing.T) {
	g := newRig(t, 50)
	g.rcv.SetFault(http.StatusInternalServerError, 0)
	posts := 0
	for range 7 * 24 * 2 { // a failed check every 30 minutes
		o := g.failCheck(t)
		g.now = g.now.Add(29 * time.Minute)
		if _, err := g.r.Collect(g.db, o); err != nil {
			t.Fatal(err)
		}
		meta, _, _ := g.db.Outbox(0)
		if !g.now.Before(meta.NextTry) {
			posts++
		}
		g.r.Flush(context.Background(), g.db)
	}
	meta, q, _ := g.db.Outbox(1000)
	if len(q) != 50 || meta.Dropped != 7*24*2-50 || posts > 60 { // of 336 checks: backoff to 3-6 h
		t.Fatalf("outbox %d events, %d dropped, %d posts tried in a week", len(q), meta.Dropped, posts)
	}
	g.rcv.SetFault(0, time.Hour) // back, but dripping its answer a byte an hour: this test ends only if the post does
	g.now = meta.NextTry
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // the agent's: server.stall_timeout
	defer cancel()
	g.r.Flush(ctx, g.db) // a 200 whose body never ends: the receiver has the batch
	g.rcv.SetFault(0, 0)
	g.now = g.now.Add(7 * time.Hour)
	if err := g.r.Flush(context.Background(), g.db); err != nil {
		t.Fatal(err)
	}
	v := g.rcv.Snapshot()
	if len(v.Events) != 50 || v.Dropped["gw-1"] != 7*24*2-50 {
		t.Fatalf("receiver: %d events, dropped %v", len(v.Events), v.Dropped)
	}
	if meta, q, _ := g.db.Outbox(1000); len(q) != 0 || meta.Dropped != 0 {
		t.Fatalf("after delivery: %d events, %d dropped still counted", len(q), meta.Dropped)
	}
}

// A batch the receiver refuses as malformed is dropped (and counted), not retried forever.
func TestRefusedBatchDropped(t *testing.T) {
	g := newRig(t, 100)
	g.rcv.SetFault(http.StatusBadRequest, 0)
	g.r.Collect(g.db, g.failCheck(t))
	g.r.Flush(context.Background(), g.db)
	meta, q, _ := g.db.Outbox(10)
	if len(q) != 0 || meta.Dropped != 1 {
		t.Fatalf("after a 400: %d events kept, %d dropped", len(q), meta.Dropped)
	}
}

// Every kind of outcome the database holds becomes its event, each named by what it is.
func TestDeriveKinds(t *testing.T) {
	g := newRig(t, 100)
	at := g.now
	apps := map[string]store.App{"a": {Version: "1"}, "b": {Version: "2"}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(g.db.SetState(&store.State{Generation: store.Generation{N: 3, Slot: "a", Apps: apps}, Status: store.StatusCommitted, Since: at,
		Previous: &store.Reference{N: 4, Slot: "b"}, Reason: "health check failed"}))
	must(g.db.Refuse("md5b", store.Refusal{App: "b", Version: "3", Reason: "health check failed", Time: at}))
	must(g.db.SetStaged(&store.Generation{N: 5, Slot: "b", Apps: apps}))
	must(g.db.SetDeferred(map[string]store.Deferral{"md5c": {App: "c", Version: "9", Turn: at.Add(time.Hour), Level: 125_000, Since: at}}))
	must(g.db.RecordVerify(store.VerifyRecord{Time: at, Slot: "a", N: 3, Problems: []string{"a: sha256 differs"}, Repaired: []string{"a: fetched again"}}))
	stale := at.Add(-time.Hour)
	evs, err := g.r.derive(g.db, Observed{Check: &store.CheckRecord{Time: at, Result: "failed", Class: "rejected", Error: "bad", Offered: map[string]string{"c": "9"}}, StaleSince: &stale, StagedUntil: at.Add(2 * time.Hour)})
	must(err)
	got := map[string]Event{}
	for _, e := range evs {
		got[e.Kind] = e
	}
	for kind, check := range map[string]func(Event) bool{
		RolledBack: func(e Event) bool {
			return e.ID == "gw-1/rolled_back/g4" && e.Apps["b"] == "3" && e.From == 4 && e.Generation == 3
		},
		Refused:    func(e Event) bool { return e.Apps["b"] == "3" && e.Reason == "health check failed" },
		Staged:     func(e Event) bool { return e.Generation == 5 && e.Until != nil },
		Deferred:   func(e Event) bool { return e.Apps["c"] == "9" && e.Until != nil && e.Percent == 12.5 },
		Failed:     func(e Event) bool { return e.Class == "rejected" && e.Apps["c"] == "9" },
		TrustStale: func(e Event) bool { return e.Time.Equal(stale) },
		Damaged:    func(e Event) bool { return len(e.Problems) == 1 },
		Repaired:   func(e Event) bool { return len(e.Problems) == 1 },
	} {
		if e, ok := got[kind]; !ok || !check(e) {
			t.Errorf("%s: %+v (present %v)", kind, e, ok)
		}
	}
	if _, ok := got[Installed]; ok {
		t.Error("a rolled-back-to generation reported as installed")
	}
}

// A receiver that answers garbage (not HTTP at all) is a failed post: the events stay.
func TestGarbageReceiver(t *testing.T) {
	g := newRig(t, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, buf, _ := w.(http.Hijacker).Hijack()
		buf.WriteString("\x00\x01garbage, not HTTP\r\n\r\n")
		buf.Flush()
		c.Close()
	}))
	defer srv.Close()
	g.r.URL = srv.URL + "/reports"
	g.r.Collect(g.db, g.failCheck(t))
	if err := g.r.Flush(context.Background(), g.db); err == nil {
		t.Fatal("a garbage answer counted as delivered")
	}
	if meta, q, _ := g.db.Outbox(10); len(q) != 1 || meta.Failures != 1 {
		t.Fatalf("after garbage: %d events kept, %d failures", len(q), meta.Failures)
	}
}
