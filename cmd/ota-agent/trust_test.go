package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

// row returns the catalog's row of (app, env).
func (w *world) row(app, env string) testserver.Row {
	w.t.Helper()
	for _, r := range w.srv.Catalog().Rows {
		if r.App == app && r.Env == env {
			return r
		}
	}
	w.t.Fatalf("no row %s %s", app, env)
	return testserver.Row{}
}

// trustConfig is the world's trust section with extra keys.
func (w *world) trustConfig(extra string) string {
	return "trust:\n  keys: [" + w.tw.PubPath + "]\n" + extra
}

// Mix-and-match (docs/security.md): a validly signed beta statement, served by the server as
// the prod row, is refused by a prod device (exit 4, slot untouched); a v1 statement, which
// names no channel, still installs unless trust.min_statement_version is 2.
func TestMixAndMatchRefused(t *testing.T) {
	w := newWorld(t, 4096, "")
	w.mustAgent("check", "--once")
	beta := w.row("scoreboard", "beta")
	beta.Env = "prod" // the server lies: beta's bytes and its (higher-serial) statement as prod
	w.srv.SetRow(beta)
	w.srv.FlushEdge()
	r := w.agent(nil, "check", "--once")
	if r.code != 4 || !strings.Contains(r.stderr, `published for channel "beta"`) || w.wholeSlot() != "slots/a" {
		t.Fatalf("beta as prod: exit %d, slot %s\n%s", r.code, w.wholeSlot(), r.stderr)
	}
	v1 := w.row("scoreboard", "prod")
	v1.Version, v1.Serial, v1.File = "1.9.0", 60, "blobs/scoreboard_1.9.0"
	os.WriteFile(filepath.Join(w.cat.Dir(), v1.File), randomBytes(4096, 21), 0o644)
	v1, err := w.cat.SignRowVersion(v1, 1, w.privPEM)
	if err != nil {
		t.Fatal(err)
	}
	w.srv.SetRow(v1)
	w.srv.FlushEdge()
	w.writeConfig(w.trustConfig("  min_statement_version: 2\n"))
	if r := w.agent(nil, "check", "--once"); r.code != 4 || !strings.Contains(r.stderr, "v1 statement does not name its channel") {
		t.Fatalf("v1 with min_statement_version 2: exit %d\n%s", r.code, r.stderr)
	}
	w.writeConfig("")
	w.mustAgent("check", "--once")
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "1.9.0") {
		t.Fatalf("the v1 statement did not install by default:\n%s", st.stdout)
	}
}

// stamp publishes ota-timestamp.release signed by privs.
func (w *world) stamp(issued, expires time.Time, privs ...ed25519.PrivateKey) {
	w.t.Helper()
	ts := packaging.Timestamp{Issued: issued.Unix(), Expires: expires.Unix()}
	ts.Sigs = packaging.SignAll(ts.SignedBytes(), privs...)
	raw, _ := json.Marshal(ts)
	if err := os.WriteFile(filepath.Join(w.cat.Dir(), "ota-timestamp.release"), raw, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) releaseKey() ed25519.PrivateKey {
	k, err := packaging.ParsePrivateKeyPEM(w.privPEM)
	if err != nil {
		w.t.Fatal(err)
	}
	return k
}

type trustStatus struct {
	Trust struct {
		Version int64      `json:"key_set_version"`
		Issued  *time.Time `json:"timestamp_issued"`
		Stale   bool       `json:"stale"`
		Error   string     `json:"error"`
	} `json:"trust"`
	LastCheck struct {
		Time   time.Time `json:"time"`
		Result string    `json:"result"`
	} `json:"last_check"`
}

func (w *world) trustAt(now time.Time, args ...string) (outcome, trustStatus) {
	w.t.Helper()
	env := []string{"OTA_AGENT_TEST_NOW=" + now.UTC().Format(time.RFC3339)}
	r := w.agent(env, args...)
	st := w.agent(env, "status", "--json")
	var ts trustStatus
	if err := json.Unmarshal([]byte(st.stdout), &ts); err != nil {
		w.t.Fatalf("status --json: %v\n%s", err, st.stdout)
	}
	return r, ts
}

// Freeze: a server that stops changing (its timestamp included) is reported stale once no
// unexpired timestamp was held for trust.max_staleness; the device keeps what it runs and
// its checks keep succeeding. The signed time raises a device's clock floor.
func TestFrozenServerReportedStale(t *testing.T) {
	w := newWorld(t, 4096, "")
	w.writeConfig(w.trustConfig("  max_staleness: 1h\n"))
	t0 := time.Now().Add(time.Hour).Truncate(time.Second)
	w.stamp(t0, t0.Add(2*time.Hour), w.releaseKey())
	for _, c := range []struct {
		at    time.Duration
		stale bool
		err   string
	}{
		{10 * time.Minute, false, ""},
		{110 * time.Minute, false, ""},        // still unexpired: fresh
		{150 * time.Minute, false, "expired"}, // expired 30 min ago, last fresh 40 min ago
		{180 * time.Minute, true, "expired"},  // last fresh 70 min ago > 1h
	} {
		r, st := w.trustAt(t0.Add(c.at), "check", "--once")
		if r.code != 0 || st.Trust.Stale != c.stale || !strings.Contains(st.Trust.Error, c.err) || st.Trust.Issued == nil || !st.Trust.Issued.Equal(t0) {
			t.Fatalf("at t0+%v: exit %d, trust %+v (want stale %v, error %q)\n%s", c.at, r.code, st.Trust, c.stale, c.err, r.stderr)
		}
		if c.stale && !strings.Contains(r.stderr, "trust is stale") {
			t.Fatalf("no WARN while stale:\n%s", r.stderr)
		}
	}
	if n := w.srv.Stats().RequestsByPath["/trust"]; n != 4+1 {
		t.Fatalf("%d trust requests for 4 checks, want 4 timestamps and 1 key set (trust.keys_refresh 24h)", n)
	}
	if st := w.agent([]string{"OTA_AGENT_TEST_NOW=" + t0.Add(180*time.Minute).UTC().Format(time.RFC3339)}, "status"); !strings.Contains(st.stdout, "STALE: no fresh ota-timestamp.release") {
		t.Fatalf("status does not say stale:\n%s", st.stdout)
	}
	// A device whose clock says 2001 learns the signed time as its floor.
	d := newWorld(t, 4096, "")
	d.writeConfig(d.trustConfig("  max_staleness: 1h\n"))
	d.stamp(t0, t0.Add(2*time.Hour), d.releaseKey())
	_, st := d.trustAt(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), "check", "--once")
	if st.LastCheck.Time.Before(t0) || st.Trust.Stale {
		t.Fatalf("the clock floor did not rise to the signed time: last check at %v, trust %+v", st.LastCheck.Time, st.Trust)
	}
}

// An older, an expired or a badly signed timestamp is refused (the one held stays).
func TestTimestampRefused(t *testing.T) {
	w := newWorld(t, 4096, "")
	w.writeConfig(w.trustConfig("  max_staleness: 24h\n"))
	t0 := time.Now().Add(time.Hour).Truncate(time.Second)
	now := t0.Add(time.Minute)
	w.stamp(t0, t0.Add(48*time.Hour), w.releaseKey())
	if _, st := w.trustAt(now, "check", "--once"); st.Trust.Error != "" || st.Trust.Issued == nil {
		t.Fatalf("a good timestamp: %+v", st.Trust)
	}
	_, stranger, _ := ed25519.GenerateKey(nil)
	for _, c := range []struct {
		name            string
		issued, expires time.Time
		key             ed25519.PrivateKey
		want            string
	}{
		{"older", t0.Add(-time.Hour), t0.Add(47 * time.Hour), w.releaseKey(), "older than the one held"},
		{"expired", t0.Add(time.Second), t0.Add(30 * time.Second), w.releaseKey(), "expired at"},
		{"unknown key", t0.Add(time.Second), t0.Add(48 * time.Hour), stranger, "not trusted"},
	} {
		w.stamp(c.issued, c.expires, c.key)
		r, st := w.trustAt(now, "check", "--once")
		if r.code != 0 || !strings.Contains(st.Trust.Error, c.want) || !st.Trust.Issued.Equal(t0) || !strings.Contains(r.stderr, "ota-timestamp.release refused") {
			t.Fatalf("%s: exit %d, trust %+v, want %q and the held one kept\n%s", c.name, r.code, st.Trust, c.want, r.stderr)
		}
	}
}

// tools are the project's other commands, each built once for these tests.
var tools sync.Map // name → *builtTool

type builtTool struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// tool is the path of the command cmd/<name>, built on first use.
func tool(t *testing.T, name string) string {
	t.Helper()
	v, _ := tools.LoadOrStore(name, &builtTool{})
	b := v.(*builtTool)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", name+"-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		b.out, b.err = exec.Command("go", "build", "-o", b.path, "../"+name).CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("build %s: %v\n%s", name, b.err, b.out)
	}
	return b.path
}

// otaRelease runs the ota-release command (built once).
func otaRelease(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(tool(t, "ota-release"), args...).CombinedOutput()
	return string(out), err
}

// opensslKey makes an Ed25519 key pair with openssl: the private and public PEM files.
func opensslKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("SKIPPED: openssl is not installed (apt-get install openssl)")
	}
	priv, pub := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	for _, args := range [][]string{{"genpkey", "-algorithm", "ed25519", "-out", priv}, {"pkey", "-in", priv, "-pubout", "-out", pub}} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v %s", args, err, out)
		}
	}
	return priv, pub
}

// Key rotation (ota-keys.release), with keys made by OpenSSL: the device adopts v1 at its
// first check and refuses the removed key at once; it follows v1→v2→v3 when a statement
// names a key it does not know (it never saw v2); a threshold of two needs two signatures;
// a key set signed by fewer than the threshold and a file rolled back to a lower version
// are refused.
func TestKeyRotation(t *testing.T) {
	w := newWorld(t, 4096, "")
	dir := t.TempDir()
	k0 := filepath.Join(dir, "k0.pem")
	os.WriteFile(k0, w.privPEM, 0o600)
	var priv, pub [5]string
	pems := map[string][]byte{}
	for i := 1; i <= 4; i++ {
		priv[i], pub[i] = opensslKey(t, dir, "k"+string(rune('0'+i)))
		pems[priv[i]], _ = os.ReadFile(priv[i])
	}
	rotate := func(args ...string) (string, error) {
		return otaRelease(t, append([]string{"keys", "rotate", "--catalog", w.cat.Dir()}, args...)...)
	}
	w.writeConfig(w.trustConfig("  keys_refresh: 1ns\n")) // every check asks (a 304 when unchanged)
	w.mustAgent("check", "--once")
	if out, err := rotate("--current", w.tw.PubPath, "--add", pub[1], "--remove", w.tw.PubPath, "--sign-with", k0); err != nil {
		t.Fatalf("rotate v1: %v %s", err, out)
	}
	version := func() int64 {
		var st trustStatus
		json.Unmarshal([]byte(w.mustAgent("status", "--json").stdout), &st)
		return st.Trust.Version
	}
	w.mustAgent("check", "--once")
	if v := version(); v != 1 {
		t.Fatalf("after the first check the key set is v%d, want v1", v)
	}
	w.release("scoreboard", "3.0.0", randomBytes(4096, 30), 80) // signed by K0, removed in v1
	if r := w.agent(nil, "check", "--once"); r.code != 4 || !strings.Contains(r.stderr, "not trusted") || w.wholeSlot() != "slots/a" {
		t.Fatalf("a removed key's statement: exit %d\n%s", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"--add", pub[2], "--remove", pub[1], "--sign-with", priv[1]},                                    // v2
		{"--add", pub[3] + "," + pub[4], "--remove", pub[2], "--sign-with", priv[2], "--threshold", "2"}, // v3
	} {
		if out, err := rotate(args...); err != nil {
			t.Fatalf("rotate %v: %v %s", args, err, out)
		}
	}
	w.writeConfig(w.trustConfig("  keys_refresh: 0\n")) // only when a statement names an unknown key
	w.releaseWith("scoreboard", "3.1.0", randomBytes(4096, 31), 81, pems[priv[3]], pems[priv[4]])
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stderr, "adopted a new release key set") {
		t.Fatalf("no adoption logged:\n%s", r.stderr)
	}
	if st := w.mustAgent("status"); version() != 3 || !strings.Contains(st.stdout, "3.1.0") {
		t.Fatalf("after v1→v3: key set v%d\n%s", version(), st.stdout)
	}
	w.releaseWith("scoreboard", "3.2.0", randomBytes(4096, 32), 82, pems[priv[3]])
	if r := w.agent(nil, "check", "--once"); r.code != 4 || !strings.Contains(r.stderr, "threshold 2") {
		t.Fatalf("one signature of two: exit %d\n%s", r.code, r.stderr)
	}
	if out, err := rotate("--add", pub[1], "--sign-with", priv[3]); err == nil || !strings.Contains(out, "would refuse") {
		t.Fatalf("ota-release wrote a key set under the threshold: %v %s", err, out)
	}
	// Written by hand anyway (or by an attacker holding one key): the device refuses it.
	path := filepath.Join(w.cat.Dir(), "ota-keys.release")
	raw, _ := os.ReadFile(path)
	var f packaging.KeysFile
	json.Unmarshal(raw, &f)
	good := f
	k3, _ := packaging.ParsePrivateKeyPEM(pems[priv[3]])
	weak := packaging.SignedKeySet{Version: 4, Threshold: 1, Keys: f.Versions[2].Keys[:1]}
	weak.Sigs = packaging.SignAll(weak.SignedBytes(), k3)
	f.Versions = append(f.Versions, weak)
	raw, _ = json.Marshal(f)
	os.WriteFile(path, raw, 0o644)
	w.writeConfig(w.trustConfig("  keys_refresh: 1ns\n"))
	if r := w.agent(nil, "check", "--once"); version() != 3 || !strings.Contains(r.stderr, "ota-keys.release refused") {
		t.Fatalf("under the threshold: key set v%d\n%s", version(), r.stderr)
	}
	good.Versions = good.Versions[:2] // a file rolled back to v2
	raw, _ = json.Marshal(good)
	os.WriteFile(path, raw, 0o644)
	if r := w.agent(nil, "check", "--once"); version() != 3 || !strings.Contains(r.stderr, "older than the key set v3") {
		t.Fatalf("a lower version: key set v%d\n%s", version(), r.stderr)
	}
}
