package assemble

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/testenv"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// world is a state directory whose slot a holds the installed set, a release key, and an
// offline directory to install from.
type world struct {
	a    *Assembly
	priv ed25519.PrivateKey
	dir  string // the offline directory
	log  *bytes.Buffer
}

func newWorld(t *testing.T, installed map[string][]byte, serials map[string]int64) world {
	t.Helper()
	files := map[string][]byte{}
	apps := map[string]store.App{}
	for app, data := range installed {
		files[app] = data
		d, _ := packaging.DigestReader(bytes.NewReader(data))
		apps[app] = store.App{Version: "1.0", MD5: d.MD5, SHA256: d.SHA256, Size: d.Size, Serial: serials[app], Signed: true}
	}
	slots, st, db := testenv.StateDir(t, files)
	pub, priv, _ := ed25519.GenerateKey(nil)
	cfg := &config.Config{}
	cfg.Trust.Threshold, cfg.Trust.MinStatementVersion, cfg.Install.MaxAttempts = 1, 1, 2
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	clock := trust.NewClock(time.Now, time.Time{})
	env := Env{Cfg: cfg, Log: logger, Slots: slots, Keyed: true, Status: func(string) {}, Now: clock.Now,
		Trust: &trust.Verifier{Keys: []ed25519.PublicKey{pub}, Cfg: cfg, Log: logger, Clock: clock}}
	a := &Assembly{Env: env, DB: db, Mode: protocol.ModeFull, Installed: apps, From: "a", Offline: true, OfflineDir: t.TempDir(), St: st}
	return world{a: a, priv: priv, dir: a.OfflineDir, log: &log}
}

// offer puts app_version and its signed .release into the offline directory.
func (w world) offer(t *testing.T, app, version string, data []byte, serial int64) {
	t.Helper()
	d, _ := packaging.DigestReader(bytes.NewReader(data))
	rf := packaging.ReleaseFile{App: app, Version: version, MD5: d.MD5, SHA256: d.SHA256, Size: d.Size, Serial: serial}
	rf.Sig, rf.KeyID = rf.Statement().Sign(w.priv)
	doc, _ := json.Marshal(rf)
	os.WriteFile(filepath.Join(w.dir, app+"_"+version), data, 0o644)
	os.WriteFile(filepath.Join(w.dir, app+"_"+version+".release"), doc, 0o644)
}

func (w world) assemble(ctx context.Context) error {
	if err := w.a.Receive(ctx, nil, 2); err != nil {
		return err
	}
	if err := w.a.Verify(ctx); err != nil {
		return err
	}
	return w.a.Compose()
}

// A signed release arrives, is verified and placed; the app it does not name is carried
// over (an offline payload adds, never removes).
func TestAssembleCarriesOver(t *testing.T) {
	w := newWorld(t, map[string][]byte{"scoreboard": []byte("v1"), "tempsensor": []byte("temp")}, map[string]int64{"scoreboard": 1})
	w.offer(t, "scoreboard", "2.0", []byte("scoreboard two"), 2)
	if err := w.assemble(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := w.a.Next
	if next.N != 2 || next.Slot != "b" || next.Apps["scoreboard"].Version != "2.0" || !next.Apps["scoreboard"].Signed || next.Apps["tempsensor"].Version != "1.0" {
		t.Fatalf("next = %+v", next)
	}
	if !w.a.DirChange || len(w.a.Removed) != 0 || !w.a.Apps["scoreboard"].Changed || w.a.Apps["tempsensor"].Changed {
		t.Fatalf("dirChange %v removed %v apps %+v", w.a.DirChange, w.a.Removed, w.a.Apps)
	}
	for app, want := range map[string]string{"scoreboard": "scoreboard two", "tempsensor": "temp"} {
		b, err := os.ReadFile(filepath.Join(w.a.St.Dir(), app))
		if err != nil || string(b) != want {
			t.Errorf("staged %s = %q, %v", app, b, err)
		}
	}
}

// A rollback is refused by its signed serial and counted toward install.max_attempts: at the
// second attempt the release is refused on this device, and the error says how to retry.
func TestAssembleRefusesRollbackWithinBudget(t *testing.T) {
	w := newWorld(t, map[string][]byte{"scoreboard": []byte("v5")}, map[string]int64{"scoreboard": 5})
	w.offer(t, "scoreboard", "0.9", []byte("old scoreboard"), 3)
	err := w.assemble(context.Background())
	if !errors.Is(err, fault.ErrRejected) || !strings.Contains(err.Error(), "rollback refused") || strings.Contains(err.Error(), "gave up") {
		t.Fatalf("first attempt: %v", err)
	}
	if refused, _ := w.a.DB.Refusals(); len(refused) != 0 {
		t.Fatalf("refused after one attempt: %v", refused)
	}
	w2 := *w.a
	w2.St, _ = w.a.Slots.Stage("b")
	defer w2.St.Abort()
	w2.Got, w2.Plan = nil, nil
	w.a = &w2
	err = w.assemble(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts (install.max_attempts)") || !strings.Contains(err.Error(), "ota-agent retry scoreboard") {
		t.Fatalf("second attempt: %v", err)
	}
	refused, err := w.a.DB.Refusals()
	if err != nil || len(refused) != 1 {
		t.Fatalf("refusals = %v, %v", refused, err)
	}
}

// Wrong bytes count by the bytes that arrived: a damaged transfer (different bytes each
// time) never burns the release; the same wrong bytes twice do.
func TestBudgetCountsTheSameWrongBytes(t *testing.T) {
	w := newWorld(t, nil, nil)
	item := protocol.PlanItem{App: "scoreboard", Version: "2.0"}
	wrong := errors.Join(trust.ErrWrongBytes, errors.New("sha256 mismatch"))
	for i, sha := range []string{"aa", "bb", "cc"} {
		if err := w.a.budget(item, "m1", sha, wrong); err == nil || !strings.Contains(err.Error(), "not counted") {
			t.Fatalf("damaged transfer %d: %v", i, err)
		}
	}
	if err := w.a.budget(item, "m1", "aa", wrong); err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("the same wrong bytes again: %v", err)
	}
	if refused, _ := w.a.DB.Refusals(); refused["m1"].App != "scoreboard" {
		t.Fatalf("refusals = %v", refused)
	}
	if err := w.a.budget(item, "", "aa", wrong); err != wrong {
		t.Fatalf("no MD5 to count by: %v", err)
	}
}

// With trust keys an unsigned answer removes nothing, unless trust.allow_unsigned_removals;
// without keys it removes what it does not list. Refusals come from the database.
func TestRules(t *testing.T) {
	w := newWorld(t, nil, nil)
	w.a.DB.Refuse("m1", store.Refusal{App: "x"})
	for _, c := range []struct {
		keyed, allow, remove bool
	}{{true, false, false}, {true, true, true}, {false, false, true}} {
		w.a.Keyed, w.a.Cfg.Trust.AllowUnsignedRemovals = c.keyed, c.allow
		r, err := w.a.Rules(w.a.DB, &store.State{Damaged: map[string]string{"y": "gone"}})
		if err != nil || r.RemoveUnlisted != c.remove || r.Refused["m1"].App != "x" || r.Damaged["y"] != "gone" {
			t.Errorf("keyed %v allow %v: %+v %v", c.keyed, c.allow, r, err)
		}
	}
}

// Finished forgets the attempts and refusals of what was installed.
func TestFinishedForgets(t *testing.T) {
	w := newWorld(t, map[string][]byte{"scoreboard": []byte("v1")}, map[string]int64{"scoreboard": 1})
	w.offer(t, "scoreboard", "2.0", []byte("scoreboard two"), 2)
	if err := w.assemble(context.Background()); err != nil {
		t.Fatal(err)
	}
	md5 := w.a.Apps["scoreboard"].MD5
	w.a.DB.Attempt(md5)
	w.a.DB.Refuse("old", store.Refusal{App: "scoreboard"})
	if err := w.a.Finished(); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.a.DB.Attempt(md5); n != 1 {
		t.Errorf("attempts of the installed release not forgotten: %d", n)
	}
	if refused, _ := w.a.DB.Refusals(); len(refused) != 0 {
		t.Errorf("earlier refusals of the app kept: %v", refused)
	}
}
