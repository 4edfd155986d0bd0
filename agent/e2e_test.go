package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
)

var wantApps = []string{"modemFW", "os_armv8", "scoreboard", "videoStreamer"}

// TestEndToEnd: both origins, with and without the edge, both payload modes: the first
// check installs the right binaries, the second is a 304 with zero body bytes.
func TestEndToEnd(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    testserver.Options
		payload string
	}{
		{"apprunner edge full", testserver.Options{}, "full"},
		{"apprunner edge metadata", testserver.Options{}, "metadata"},
		{"apprunner no-edge auto", testserver.Options{NoEdge: true}, "auto"},
		{"lambda edge auto", testserver.Options{Origin: testserver.OriginLambda}, "auto"},
		{"lambda no-edge metadata", testserver.Options{Origin: testserver.OriginLambda, NoEdge: true}, "metadata"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opts)
			cfg := e.config("server:\n  url: " + e.base + "/package\n  payload: " + c.payload + "\n  firmware: {" + e.cat.Bucket + ": " + e.base + "/firmware/}\n")
			res, err := e.check(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Result != ResultUpdated || len(res.Apps) != 4 {
				t.Fatalf("first check: %+v", res)
			}
			for _, app := range wantApps {
				if got, want := fileMD5(t, filepath.Join(cfg.StateDir, "current", app)), e.row(app, "prod").MD5; got != want {
					t.Fatalf("%s: md5 %s, want %s", app, got, want)
				}
			}
			if left, _ := os.ReadDir(filepath.Join(cfg.StateDir, "downloads")); len(left) > 0 {
				t.Fatalf("downloads left behind after the install: %v", left)
			}
			before := e.srv.Stats()
			res, err = e.check(cfg)
			if err != nil || res.Result != ResultUpToDate {
				t.Fatalf("second check: %+v %v", res, err)
			}
			after := e.srv.Stats()
			if d := after.BytesByPath["/package"] - before.BytesByPath["/package"]; d != 0 {
				t.Fatalf("second check downloaded %d body bytes", d)
			}
			if after.BytesByPath["/firmware"] != before.BytesByPath["/firmware"] {
				t.Fatal("second check touched the firmware CDN")
			}
			s := verifyState(t, e.agent(cfg))
			if s.N != 1 || s.Slot != "a" || !s.Apps["scoreboard"].Signed {
				t.Fatalf("state %+v", s)
			}
		})
	}
}

// TestRollOutRollBack: one row rolled out installs only that binary; an older binary
// re-signed with a higher serial is a roll-back the device accepts; a replayed lower serial
// is refused with the active slot untouched.
func TestRollOutRollBack(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	cfg := e.config("")
	if _, err := e.check(cfg); err != nil {
		t.Fatal(err)
	}
	old := e.row("scoreboard", "prod")
	e.release("scoreboard", "prod", "1.1.0", []byte("scoreboard 1.1.0 bytes"), 10)
	before := e.srv.Stats()
	res, err := e.check(cfg)
	if err != nil || res.Result != ResultUpdated || res.Slot != "b" {
		t.Fatalf("roll-out: %+v %v", res, err)
	}
	for app, x := range res.Apps {
		if x.Changed != (app == "scoreboard") {
			t.Fatalf("%s changed=%v", app, x.Changed)
		}
	}
	if got := e.srv.Stats().BytesByPath["/package"] - before.BytesByPath["/package"]; got > 4096 {
		t.Fatalf("roll-out of a 22-byte binary sent %d bytes: more than the one binary", got)
	}
	// Roll back: the old binary, re-signed with a higher serial.
	rb := old
	rb.Serial = 11
	rb, err = e.cat.SignRow(rb, e.privPEM)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetRow(rb)
	e.srv.FlushEdge()
	if res, err := e.check(cfg); err != nil || res.Apps["scoreboard"].Version != "1.0.0" || res.Apps["scoreboard"].Serial != 11 {
		t.Fatalf("operator roll-back: %+v %v", res, err)
	}
	// Replay: the 1.1.0 statement (serial 10) is lower than the installed 11.
	e.release("scoreboard", "prod", "1.1.0", []byte("scoreboard 1.1.0 bytes"), 10)
	snap := takeSnapshot(t, cfg.StateDir)
	_, err = e.check(cfg)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "rollback refused") {
		t.Fatalf("replayed lower serial: %v", err)
	}
	if d := snap.equal(takeSnapshot(t, cfg.StateDir)); d != "" {
		t.Fatal(d)
	}
	verifyState(t, e.agent(cfg))
}

// TestReferenceOnly: an unmodified reference deployment sends no hashes or signatures.
func TestReferenceOnly(t *testing.T) {
	for _, origin := range []string{testserver.OriginAppRunner, testserver.OriginLambda} {
		t.Run(origin, func(t *testing.T) {
			e := newEnv(t, testserver.Options{ReferenceOnly: true, Origin: origin})
			// Without trust keys and without allow_unsigned: refused, nothing installed.
			cfg := e.config("trust:\n  keys: []\n")
			_, err := e.check(cfg)
			if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "unsigned releases are refused") {
				t.Fatalf("unsigned: %v", err)
			}
			if _, err := e.agent(cfg).Slots.Active(); err == nil {
				t.Fatal("something was installed")
			}
			cfg = e.config("trust:\n  keys: []\n  allow_unsigned: true\n")
			res, err := e.check(cfg)
			if err != nil || res.Result != ResultUpdated || len(res.Apps) != 4 {
				t.Fatalf("allow_unsigned: %+v %v", res, err)
			}
			if res, err := e.check(cfg); err != nil || res.Result != ResultUpToDate {
				t.Fatalf("second check: %+v %v", res, err)
			}
			verifyState(t, e.agent(cfg))
		})
	}
	// With trust keys, a reference server plus published .release statements is enough.
	e := newEnv(t, testserver.Options{ReferenceOnly: true})
	res, err := e.check(e.config(""))
	if err != nil || !strings.Contains(strings.Join(keys(res.Apps), " "), "scoreboard") {
		t.Fatalf("signed via .release files: %+v %v", res, err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestDryRunTouchesNothing(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	cfg := e.config("")
	res, err := e.agent(cfg).Check(context.Background(), CheckOptions{DryRun: true})
	if err != nil || res.Plan == nil || len(res.Plan.Download) != 4 || res.Result != ResultAvailable {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if _, err := e.agent(cfg).Slots.Active(); err == nil {
		t.Fatal("dry run installed something")
	}
	if e.srv.Stats().BytesByPath["/firmware"] != 0 {
		t.Fatal("dry run downloaded binaries")
	}
}

// TestInstallHooks: pre_install sees the staged slot and can refuse the install (nothing
// changes); post_commit runs after the commit with the slot and versions in its environment.
func TestInstallHooks(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	log := filepath.Join(e.dir, "hooks.log")
	cfg := e.config("hooks:\n  pre_install: test -f \"$OTA_STAGING_DIR/scoreboard\" && echo pre $OTA_SLOT $OTA_APP_SCOREBOARD >> " + log + "\n  post_commit: echo post $OTA_SLOT $OTA_GENERATION $OTA_APP_SCOREBOARD >> " + log + "\n")
	if _, err := e.check(cfg); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(log)
	if string(got) != "pre a 1.0.0\npost a 1 1.0.0\n" {
		t.Fatalf("hooks saw:\n%s", got)
	}
	e.release("scoreboard", "prod", "1.9.0", []byte("nineteen"), 19)
	refuse := e.config("hooks:\n  pre_install: exit 3\n")
	snap := takeSnapshot(t, refuse.StateDir)
	if _, err := e.check(refuse); err == nil || !strings.Contains(err.Error(), "pre_install refused") {
		t.Fatalf("pre_install exit 3: %v", err)
	}
	if d := snap.equal(takeSnapshot(t, refuse.StateDir)); d != "" {
		t.Fatal(d)
	}
}
