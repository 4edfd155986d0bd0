package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/catalog"
)

// savePayload saves the server's full answer for the world's device: exactly what an
// offline install takes as a file.
func savePayload(t *testing.T, w *world) string {
	t.Helper()
	req, _ := http.NewRequest("GET", w.base+"/package?attrgamer=prod&cpuarch=armv8&os=prod&payloadtype=fullpayload", nil)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("payload: %v %v", resp, err)
	}
	defer resp.Body.Close()
	path := filepath.Join(t.TempDir(), "payload.tar.gz")
	f, _ := os.Create(path)
	io.Copy(f, resp.Body)
	f.Close()
	return path
}

// ota-agent install FILE|DIR: a saved payload and a directory of binaries with .release files
// install like downloads (other apps kept); unsigned binaries need trust.allow_unsigned;
// tampered ones are refused and leave the active slot as it was. Nothing asks the server.
func TestOfflineInstall(t *testing.T) {
	w := newWorld(t, 4096, "")
	w.release("scoreboard", "10.0.0", randomBytes(7000, 41), 100)
	file := savePayload(t, w)
	requests := w.srv.Stats().Requests
	r := w.mustAgent("install", file)
	if !strings.Contains(r.stdout, "updated: installed into slot a") || w.srv.Stats().Requests != requests {
		t.Fatalf("install FILE: %s (requests %d -> %d)", r.stdout, requests, w.srv.Stats().Requests)
	}
	w.mustAgent("verify")
	// A tampered payload: refused, exit 4, slot a untouched.
	raw, _ := os.ReadFile(file)
	raw[len(raw)/2] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.tar.gz")
	os.WriteFile(bad, raw, 0o644)
	before := tree(t, filepath.Join(w.state, "slots", "a"))
	if r := w.agent(nil, "install", bad); r.code != 4 {
		t.Fatalf("tampered payload: exit %d\n%s", r.code, r.stderr)
	}
	if w.wholeSlot() != "slots/a" || tree(t, filepath.Join(w.state, "slots", "a")) != before {
		t.Fatal("a refused offline install changed the active slot")
	}
	// A directory: a new scoreboard with its statement; the other apps are kept.
	w.release("scoreboard", "10.1.0", randomBytes(7000, 42), 101)
	dir := t.TempDir()
	blob := filepath.Join(w.cat.Dir(), "blobs", "scoreboard_10.1.0")
	for _, suffix := range []string{"", ".release"} {
		b, err := os.ReadFile(blob + suffix)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "scoreboard_10.1.0"+suffix), b, 0o644)
	}
	// What else lies in a directory a person copied: ignored.
	for _, stray := range []string{"README.txt", "SHA256SUMS", "scoreboard_10.1.0.chunks", "notes_draft"} {
		os.WriteFile(filepath.Join(dir, stray), []byte("not a binary"), 0o644)
	}
	r = w.mustAgent("install", dir)
	if !strings.Contains(r.stdout, "slot b") || !strings.Contains(r.stdout, "scoreboard       10.1.0") || !strings.Contains(r.stdout, "os_armv8") {
		t.Fatalf("install DIR:\n%s", r.stdout)
	}
	w.mustAgent("verify")
	// Unsigned: refused with trust keys, installed with trust.allow_unsigned.
	os.Remove(filepath.Join(dir, "scoreboard_10.1.0.release"))
	os.WriteFile(filepath.Join(dir, "scoreboard_10.1.0"), []byte("unsigned build"), 0o644)
	os.Rename(filepath.Join(dir, "scoreboard_10.1.0"), filepath.Join(dir, "scoreboard_10.2.0"))
	if r := w.agent(nil, "install", dir); r.code != 4 || !strings.Contains(r.stderr, "scoreboard_10.2.0: no .release beside it; an unsigned binary needs trust.allow_unsigned") {
		t.Fatalf("unsigned with trust keys: exit %d\n%s", r.code, r.stderr)
	}
	w.writeConfig("trust:\n  allow_unsigned: true\n")
	w.mustAgent("install", dir)
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "scoreboard       10.2.0") {
		t.Fatalf("unsigned with allow_unsigned:\n%s", st.stdout)
	}
	w.mustAgent("verify")
	if r := w.agent(nil, "install", filepath.Join(dir, "missing")); r.code != 2 {
		t.Fatalf("a missing path: exit %d", r.code)
	}
}

// What `ota-release bundle` writes installs offline like the server's answer.
func TestOfflineInstallBundle(t *testing.T) {
	w := newWorld(t, 4096, "")
	cat, err := catalog.Load(w.cat.Dir())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "device.tar.gz")
	f, _ := os.Create(file)
	if err := cat.Bundle(f, cat.Select(map[string]string{"cpuarch": "armv8", "attrgamer": "prod"}), time.Now()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := w.mustAgent("install", file, "--json")
	if !strings.Contains(r.stdout, `"result": "updated"`) || !strings.Contains(r.stdout, "scoreboard") {
		t.Fatalf("install bundle:\n%s", r.stdout)
	}
	w.converges() // and the server agrees: the next check is a 304
}
