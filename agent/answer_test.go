package agent

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
)

// The device's own rules over what an answer may do (issue: an unsigned answer must not
// remove apps; refusals and "already installed" are enforced locally).

// recorded is the real testserver's answer to a first check (no If-None-Match), replayed by
// a server that ignores whatever the device sends.
func recorded(t *testing.T, e *env, metadata bool) reply {
	t.Helper()
	q := "?attrcellular=prod&attrgamer=prod&cpuarch=armv8&os=prod&payloadtype=fullpayload"
	if metadata {
		q = strings.Replace(q, "fullpayload", "metadataonly", 1)
	}
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}} // the gzip bytes as sent
	resp, err := c.Get(e.base + "/package" + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("recording: %v %v", resp.Status, err)
	}
	h := map[string]string{}
	for _, k := range []string{"Content-Type", "Content-Encoding"} {
		if v := resp.Header.Get(k); v != "" {
			h[k] = v
		}
	}
	return reply{status: 200, header: h, body: body}
}

func slotFiles(t *testing.T, stateDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(stateDir, "current"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range ents {
		names = append(names, en.Name())
	}
	return names
}

// TestUnsignedAnswerRemovesNothing: with trust keys, an answer that leaves apps out (`{}` as
// metadata, or a payload holding only package_details.json = {}) removes nothing: the apps
// are kept and reported; trust.allow_unsigned_removals lets it remove them, and without
// keys removals happen and are named.
func TestUnsignedAnswerRemovesNothing(t *testing.T) {
	all := []string{"modemFW", "os_armv8", "scoreboard", "videoStreamer"}
	empty := map[string]reply{
		"metadata": {status: 200, header: map[string]string{"Content-Type": "application/json"}, body: []byte("{}")},
		"full":     {status: 200, header: gz, body: tgz(member{name: "package_details.json", body: "{}"})},
	}
	for _, mode := range []string{"metadata", "full"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, testserver.Options{})
			cfg := e.config("")
			if _, err := e.check(cfg); err != nil {
				t.Fatal(err)
			}
			snap := takeSnapshot(t, cfg.StateDir)
			url := hostileServer(t, empty[mode]) + "/package"
			hostile := "server:\n  url: " + url + "\n  payload: " + mode + "\n"
			a := e.agent(e.config(hostile))
			res, err := a.Check(context.Background(), CheckOptions{})
			if err != nil || res.Result != ResultUpToDate || len(res.Removed) != 0 {
				t.Fatalf("unsigned empty answer: %+v %v", res, err)
			}
			if !slices.Equal(res.Unlisted, all) || !strings.Contains(res.Note, "removes nothing") {
				t.Fatalf("kept apps not reported: unlisted %v, note %q", res.Unlisted, res.Note)
			}
			if got := slotFiles(t, cfg.StateDir); !slices.Contains(got, "os_armv8") || len(got) != 5 {
				t.Fatalf("current/ holds %v", got)
			}
			if s := snap.equal(takeSnapshot(t, cfg.StateDir)); s != "" {
				t.Fatal(s)
			}
			rep, err := a.ReadReport()
			if err != nil || rep.LastCheck == nil || !slices.Equal(rep.LastCheck.Unlisted, all) {
				t.Fatalf("status does not name the kept apps: %+v %v", rep.LastCheck, err)
			}
			// The operator allows it: the same answer removes them, and says which.
			a = e.agent(e.config(hostile + "trust:\n  keys: [" + e.pubPath + "]\n  allow_unsigned_removals: true\n"))
			res, err = a.Check(context.Background(), CheckOptions{})
			if err != nil || res.Result != ResultUpdated || !slices.Equal(res.Removed, all) {
				t.Fatalf("allowed removal: %+v %v", res, err)
			}
		})
	}
	// Without trust keys the answer is all there is: removals happen and are named.
	e := newEnv(t, testserver.Options{ReferenceOnly: true})
	cfg := e.config("trust:\n  keys: []\n  allow_unsigned: true\n")
	if _, err := e.check(cfg); err != nil {
		t.Fatal(err)
	}
	e.srv.DeleteRow("modemFW", "prod")
	e.release("scoreboard", "prod", "1.1.0", []byte("scoreboard 1.1.0"), 0) // a 304 says nothing of removals
	res, err := e.check(cfg)
	if err != nil || !slices.Equal(res.Removed, []string{"modemFW"}) {
		t.Fatalf("unsigned removal not named: %+v %v", res, err)
	}
}

// TestServerCannotForceReinstall: an answer that ignores If-None-Match and sends what is
// installed changes nothing (no switch, the rollback target kept), and a release the device
// refused (failed health check) is not installed again when a server offers it. The server
// is a reference one (no hashes in the answer), so the rules hold on the verified bytes.
func TestServerCannotForceReinstall(t *testing.T) {
	for _, mode := range []string{"full", "metadata"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, testserver.Options{ReferenceOnly: true})
			cfg := e.config("")
			if _, err := e.check(cfg); err != nil {
				t.Fatal(err)
			}
			e.release("scoreboard", "prod", "1.1.0", []byte("scoreboard 1.1.0 bytes"), 10)
			if res, err := e.check(cfg); err != nil || res.Slot != "b" {
				t.Fatalf("update: %+v %v", res, err)
			}
			firmware := "  firmware: {" + e.cat.Bucket + ": " + e.base + "/firmware/}\n"
			replay := func(r reply, extra string) (*Result, error) {
				server := "server:\n  url: " + hostileServer(t, r) + "/package\n  payload: " + mode + "\n" + firmware
				return e.agent(e.config(server+extra)).Check(context.Background(), CheckOptions{})
			}
			// The answer to a device with nothing installed: every byte is installed here.
			snap := takeSnapshot(t, cfg.StateDir)
			same := recorded(t, e, mode == "metadata")
			for i := 0; i < 2; i++ {
				res, err := replay(same, "")
				if err != nil || res.Result != ResultUpToDate || res.Switched || !strings.Contains(res.Note, "sent what is installed") {
					t.Fatalf("identical answer %d: %+v %v", i, res, err)
				}
				if d := snap.equal(takeSnapshot(t, cfg.StateDir)); d != "" {
					t.Fatal(d)
				}
			}
			// A release that fails its health check is refused ...
			e.release("scoreboard", "prod", "1.2.0", []byte("scoreboard 1.2.0 bytes"), 12)
			if _, err := e.check(e.config("hooks:\n  health: exit 7\n")); err == nil {
				t.Fatal("the health check did not fail")
			}
			// ... and a server that offers it again does not get it installed.
			snap = takeSnapshot(t, cfg.StateDir)
			res, err := replay(recorded(t, e, mode == "metadata"), "")
			if err != nil || res.Result != ResultUpToDate || res.Switched || !strings.Contains(res.Note, "refused (scoreboard)") {
				t.Fatalf("refused release offered again: %+v %v", res, err)
			}
			if len(res.Refused) != 1 {
				t.Fatalf("the refusal is not reported: %+v", res.Refused)
			}
			if d := snap.equal(takeSnapshot(t, cfg.StateDir)); d != "" {
				t.Fatal(d)
			}
			if got := verifyState(t, e.agent(cfg)).Apps["scoreboard"].Version; got != "1.1.0" {
				t.Fatalf("scoreboard %s installed", got)
			}
		})
	}
}
