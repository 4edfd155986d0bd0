package agent

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/testenv"
	"github.com/ota-agent/ota-agent/store"
	"github.com/ota-agent/ota-agent/testserver"
)

// env is one test's world: a sample catalog signed with a fresh key, the real testserver on
// loopback, and a state directory in t.TempDir().
type env struct {
	t       testing.TB
	world   *testenv.World
	dir     string
	cat     *testserver.Catalog
	srv     *testserver.Server
	base    string
	privPEM []byte
	pubPath string
}

func newEnv(t testing.TB, opts testserver.Options) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	opts.SpoolDir = t.TempDir()
	w, err := testenv.NewWorld(e.dir, 8192, 11, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	e.world, e.cat, e.srv, e.base, e.privPEM, e.pubPath = w, w.Cat, w.Srv, w.Base, w.PrivPEM, w.PubPath
	return e
}

// config writes a YAML configuration (the default one plus extra sections) and loads it.
func (e *env) config(extra string) *Config {
	e.t.Helper()
	y := e.world.Config(filepath.Join(e.dir, "state"), "", "{gamer: prod, cellular: prod}", extra)
	path := filepath.Join(e.dir, fmt.Sprintf("config-%d.yaml", time.Now().UnixNano()))
	os.WriteFile(path, []byte(y), 0o644)
	c, err := LoadConfig(path, "", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) agent(c *Config) *Agent {
	e.t.Helper()
	a, err := New(c, slog.New(slog.NewTextHandler(io.Discard, nil)), LoopbackHTTP())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { a.Close() })
	return a
}

func (e *env) check(c *Config) (*Result, error) {
	a := e.agent(c)
	defer a.Close()
	return a.Check(context.Background(), CheckOptions{})
}

func (e *env) row(app, env string) testserver.Row {
	for _, r := range e.srv.Catalog().Rows {
		if r.App == app && r.Env == env {
			return r
		}
	}
	e.t.Fatalf("no row %s/%s", app, env)
	return testserver.Row{}
}

// release publishes a new binary for (app, env) with the given version, bytes and serial.
func (e *env) release(app, env, version string, data []byte, serial int64) testserver.Row {
	e.t.Helper()
	r := e.row(app, env)
	r.Version, r.Serial = version, serial
	r.File = "blobs/" + app + "_" + version
	os.WriteFile(filepath.Join(e.cat.Dir(), r.File), data, 0o644)
	r, err := e.cat.SignRow(r, e.privPEM)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.srv.SetRow(r); err != nil {
		e.t.Fatal(err)
	}
	e.srv.FlushEdge()
	return r
}

// snapshot is what must not change when an update is refused: the active slot's bytes and
// the database's state, journal and refusals.
type snapshot struct {
	files map[string]string
	db    string
}

func takeSnapshot(t testing.TB, stateDir string) snapshot {
	t.Helper()
	s := snapshot{files: map[string]string{}}
	cur := filepath.Join(stateDir, "current")
	target, _ := os.Readlink(cur)
	s.files["->"] = target
	entries, _ := os.ReadDir(cur)
	for _, en := range entries {
		b, _ := os.ReadFile(filepath.Join(cur, en.Name()))
		h := md5.Sum(b)
		s.files[en.Name()] = hex.EncodeToString(h[:])
	}
	root, err := os.OpenRoot(stateDir)
	if err != nil {
		if os.IsNotExist(err) {
			return s
		}
		t.Fatal(err)
	}
	defer root.Close()
	db, err := store.Open(root, "agent.db", store.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		if os.IsNotExist(err) {
			return s
		}
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatalf("database fails its consistency check: %v", err)
	}
	st, _ := db.State()
	j, _ := db.Journal()
	r, _ := db.Refusals()
	raw, _ := json.Marshal([]any{st, j, r})
	s.db = string(raw)
	return s
}

func (s snapshot) equal(o snapshot) string {
	if s.db != o.db {
		return fmt.Sprintf("database changed:\n%s\n%s", s.db, o.db)
	}
	var keys []string
	for k := range s.files {
		keys = append(keys, k)
	}
	for k := range o.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s.files[k] != o.files[k] {
			return fmt.Sprintf("active slot changed at %s: %q -> %q", k, s.files[k], o.files[k])
		}
	}
	return ""
}

// verifyState re-hashes the active slot against the database, as `ota-agent verify` does.
func verifyState(t testing.TB, a *Agent) *store.State {
	t.Helper()
	s, err := checkState(a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkState is verifyState for any goroutine: it returns what is wrong instead of failing.
func checkState(a *Agent) (*store.State, error) {
	db, err := a.OpenDBReadOnly()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	s, err := db.State()
	if err != nil || s == nil {
		return nil, fmt.Errorf("no state: %v", err)
	}
	active, err := a.Slots.Active()
	if err != nil || active != s.Slot {
		return nil, fmt.Errorf("active slot %q, database says %q (%v)", active, s.Slot, err)
	}
	if err := a.Slots.Verify(active, s.Apps); err != nil {
		return nil, err
	}
	return s, nil
}

func fileMD5(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}
