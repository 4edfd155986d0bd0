package trust

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// verifier holds one fresh release key (trust.keys) and signs entries with it.
type verifier struct {
	*Verifier
	priv ed25519.PrivateKey
	db   *store.DB
}

func newVerifier(t *testing.T) verifier {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{}
	cfg.Trust.Threshold, cfg.Trust.MinStatementVersion = 1, 1
	db, err := store.OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	v := &Verifier{Keys: []ed25519.PublicKey{pub}, Cfg: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: NewClock(time.Now, time.Time{})}
	return verifier{v, priv, db}
}

// entry is a signed v2 entry for data, published for the row (app, env, attrs).
func (v verifier) entry(app, env string, attrs map[string]bool, data []byte, serial int64) (packaging.Entry, packaging.Digests) {
	d, _ := packaging.DigestReader(strings.NewReader(string(data)))
	e := packaging.Entry{LatestVersion: "1.0", StatusCode: 200, MD5: d.MD5, SHA256: d.SHA256, Size: d.Size, Serial: serial, Class: packaging.RowClass(app, env, attrs)}
	e.Sig, e.KeyID = e.Statement(app).Sign(v.priv)
	return e, d
}

// What a statement must hold for its bytes to be installed, each refusal named.
func TestVerify(t *testing.T) {
	v := newVerifier(t)
	ctx := context.Background()
	facts := map[string]string{"cpuarch": "armv8", "os": "prod", "attrgamer": "prod", "pinned": "beta"}
	gamer := map[string]bool{"gamer": true}
	good, got := v.entry("sb", "prod", gamer, []byte("scoreboard"), 5)
	rec, err := v.Verify(ctx, v.db, facts, "sb", good, got, nil)
	if err != nil || !rec.Signed || rec.Serial != 5 || rec.MD5 != got.MD5 {
		t.Fatalf("a good statement: %+v %v", rec, err)
	}
	damaged := got
	damaged.SHA256 = strings.Repeat("0", 64)
	if _, err := v.Verify(ctx, v.db, facts, "sb", good, damaged, nil); !errors.Is(err, ErrWrongBytes) || !errors.Is(err, fault.ErrRejected) {
		t.Errorf("other bytes: %v", err)
	}
	if _, err := v.Verify(ctx, v.db, facts, "sb", good, got, &store.App{Version: "2.0", Serial: 6}); err == nil || !strings.Contains(err.Error(), "rollback refused") {
		t.Errorf("a lower serial: %v", err)
	}
	beta, bgot := v.entry("sb", "beta", gamer, []byte("scoreboard beta"), 7)
	if _, err := v.Verify(ctx, v.db, facts, "sb", beta, bgot, nil); err == nil || !strings.Contains(err.Error(), "mix-and-match") {
		t.Errorf("another channel's statement: %v", err)
	}
	pinnedProd, pgot := v.entry("pinned", "prod", gamer, []byte("pinned prod"), 8)
	if _, err := v.Verify(ctx, v.db, facts, "pinned", pinnedProd, pgot, nil); err == nil || !strings.Contains(err.Error(), "device.pins pins pinned") {
		t.Errorf("a pinned app's other channel: %v", err)
	}
	forged := good
	forged.Serial = 50 // the signature covers the serial
	if _, err := v.Verify(ctx, v.db, facts, "sb", forged, got, nil); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Errorf("a changed serial: %v", err)
	}
	v.Cfg.Trust.MinStatementVersion = 2
	v1 := good
	v1.Class = packaging.Class{}
	v1.Sig, v1.KeyID = v1.Statement("sb").Sign(v.priv)
	if _, err := v.Verify(ctx, v.db, facts, "sb", v1, got, nil); err == nil || !strings.Contains(err.Error(), "v1 statement") {
		t.Errorf("v1 under min_statement_version 2: %v", err)
	}
	v.Keys = nil
	if _, err := v.Verify(ctx, v.db, facts, "sb", good, got, nil); err == nil || !strings.Contains(err.Error(), "unsigned releases are refused") {
		t.Errorf("no keys, no allow_unsigned: %v", err)
	}
}

// A statement that does not name both digests cannot supply the MD5: Verify asks for the
// file to be hashed with MD5 (ErrNeedMD5) and accepts it then; an MD5 that differs from the
// statement's is refused.
func TestVerifyWithoutMD5(t *testing.T) {
	v := newVerifier(t)
	data := []byte("a binary with no sha256 in its statement")
	full, _ := packaging.DigestReader(strings.NewReader(string(data)))
	entry := packaging.Entry{LatestVersion: "3.0.0", StatusCode: 200, MD5: full.MD5, Size: full.Size, Serial: 90}
	entry.Sig, entry.KeyID = entry.Statement("tool").Sign(v.priv)
	got, _ := packaging.DigestReaderFor(strings.NewReader(string(data)), false)
	ctx := context.Background()
	if _, err := v.Verify(ctx, v.db, nil, "tool", entry, got, nil); !errors.Is(err, ErrNeedMD5) {
		t.Fatalf("without an MD5 and none in the statement: %v", err)
	}
	if rec, err := v.Verify(ctx, v.db, nil, "tool", entry, full, nil); err != nil || rec.MD5 != full.MD5 {
		t.Fatalf("hashed with MD5: %+v %v", rec, err)
	}
	full.MD5 = strings.Repeat("0", 32)
	if _, err := v.Verify(ctx, v.db, nil, "tool", entry, full, nil); !errors.Is(err, fault.ErrRejected) || !strings.Contains(err.Error(), "md5 mismatch") {
		t.Fatalf("a wrong MD5: %v", err)
	}
}

// The clock never goes below its floor, and the floor never goes down.
func TestClockFloor(t *testing.T) {
	device := time.Unix(0, 0) // booted in 1970
	c := NewClock(func() time.Time { return device }, time.Unix(2000, 0))
	c.Raise(time.Unix(1000, 0))
	if got := c.Now(); got.Unix() != 2000 || c.Floor().Unix() != 2000 {
		t.Fatalf("now %v, floor %v", got.Unix(), c.Floor().Unix())
	}
	device = time.Unix(5000, 0)
	if got := c.Now(); got.Unix() != 5000 {
		t.Fatalf("a device clock past the floor: %v", got.Unix())
	}
}
