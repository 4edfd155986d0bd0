package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// install.windows: outside a window an update is staged (sealed in the inactive slot, not
// switched, not fetched again, a newer one staged over it); the daemon's check switches it
// when the window opens (injected clock).
func TestStagedUntilTheWindowOpens(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	cfg := e.config("install:\n  windows: [\"02:00-03:00\"]\n")
	clock := time.Date(2026, 11, 30, 12, 0, 0, 0, time.Local)
	agentAt := func() *Agent {
		a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), LoopbackHTTP())
		if err != nil {
			t.Fatal(err)
		}
		a.Now = func() time.Time { return clock }
		t.Cleanup(func() { a.Close() })
		return a
	}
	// The first install waits for the window too.
	if res, err := agentAt().Check(context.Background(), CheckOptions{}); err != nil || res.Result != ResultStaged {
		t.Fatalf("first check: %+v %v", res, err)
	}
	e.release("scoreboard", "prod", "5.0.0", []byte("five"), 90)
	res, err := agentAt().Check(context.Background(), CheckOptions{})
	if err != nil || res.Result != ResultStaged {
		t.Fatalf("a newer release while staged: %+v %v", res, err)
	}
	before := e.srv.Stats().BytesByPath["/package"]
	if res, err := agentAt().Check(context.Background(), CheckOptions{}); err != nil || res.Result != ResultUpToDate {
		t.Fatalf("check while staged: %+v %v", res, err)
	}
	if e.srv.Stats().BytesByPath["/package"] != before {
		t.Fatal("the staged release was fetched again")
	}
	a := agentAt()
	rep, err := a.ReadReport()
	if err != nil || rep.Staged == nil || rep.Status != "" {
		t.Fatalf("status while staged: %+v %v", rep, err)
	}
	// 02:30: the daemon's check applies it.
	clock = time.Date(2026, 12, 1, 2, 30, 0, 0, time.Local)
	a = agentAt()
	if out := a.runOnce(context.Background()); out.Err != nil {
		t.Fatal(out.Err)
	}
	rep, _ = a.ReadReport()
	if rep.Staged != nil || rep.Status != "committed" || rep.Apps["scoreboard"].Version != "5.0.0" {
		t.Fatalf("after the window opened: %+v", rep)
	}
	verifyState(t, a)
}
