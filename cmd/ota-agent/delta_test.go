package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

// deltaWorld: metadata mode, the sample installed, and scoreboard 1.5.0 published as the
// installed 1.0.0 with 16 KiB changed in the middle. It returns the old and new bytes.
func deltaWorld(t *testing.T) (*world, []byte, []byte) {
	w := newWorld(t, 256<<10, "#metadata\n")
	w.mustAgent("check", "--once")
	old, err := os.ReadFile(filepath.Join(w.cat.Dir(), w.row("scoreboard", "prod").File))
	if err != nil {
		t.Fatal(err)
	}
	nw := append([]byte(nil), old...)
	copy(nw[len(nw)/2:], randomBytes(16<<10, 77))
	w.release("scoreboard", "1.5.0", nw, 50)
	return w, old, nw
}

// patchPath is where `ota-release delta` puts the patch from old for scoreboard 1.5.0.
func (w *world) patchPath(old []byte) string {
	return filepath.Join(w.cat.Dir(), "blobs", "scoreboard_1.5.0"+packaging.PatchSuffix(sha256hex(old)))
}

// publishPatch writes the patch from old for scoreboard 1.5.0 with `ota-release delta`.
func (w *world) publishPatch(old []byte) {
	w.t.Helper()
	oldFile := filepath.Join(w.t.TempDir(), "old")
	os.WriteFile(oldFile, old, 0o644)
	if out, err := otaRelease(w.t, "delta", oldFile, filepath.Join(w.cat.Dir(), "blobs", "scoreboard_1.5.0")); err != nil {
		w.t.Fatalf("ota-release delta: %v %s", err, out)
	}
}

type deltaResult struct {
	Result string `json:"result"`
	Apps   map[string]struct {
		Version    string `json:"version"`
		Delivery   string `json:"delivery"`
		Downloaded int64  `json:"downloaded"`
		Size       int64  `json:"size"`
	} `json:"apps"`
}

func (w *world) checkJSON(env ...string) (outcome, deltaResult) {
	w.t.Helper()
	r := w.agent(env, "check", "--once", "--json")
	var res deltaResult
	json.Unmarshal([]byte(r.stdout), &res)
	return r, res
}

// A patch published with `ota-release delta` is what the device fetches: the bytes on the
// wire are the patch's (counted by /_stats), --json says so, and the install verifies.
func TestPatchInstall(t *testing.T) {
	w, old, nw := deltaWorld(t)
	w.publishPatch(old)
	patch, err := os.ReadFile(w.patchPath(old))
	if err != nil {
		t.Fatal(err)
	}
	fw := w.srv.Stats().BytesByPath["/firmware"]
	r, res := w.checkJSON()
	sb := res.Apps["scoreboard"]
	if r.code != 0 || sb.Delivery != "patch" || sb.Downloaded != int64(len(patch)) || sb.Size != int64(len(nw)) {
		t.Fatalf("exit %d, scoreboard %+v (patch %d bytes)\n%s", r.code, sb, len(patch), r.stderr)
	}
	if got := w.srv.Stats().BytesByPath["/delta"]; got != int64(len(patch)) || w.srv.Stats().BytesByPath["/firmware"] != fw {
		t.Fatalf("the wire: %d patch bytes, %d more firmware bytes", got, w.srv.Stats().BytesByPath["/firmware"]-fw)
	}
	w.mustAgent("verify")
	if len(patch)*10 > len(nw) {
		t.Fatalf("patch %d bytes for a %d-byte file with 16 KiB changed", len(patch), len(nw))
	}
}

// Deltas are untrusted transport: none published, a corrupt one, one that makes too much,
// one larger than the file, a server that ignores Range on the resume, and a cut in the
// middle each end in a correct install, saying why.
func TestPatchFallbacks(t *testing.T) {
	for _, c := range []struct {
		name     string
		patch    func(old, nw []byte) []byte // nil: none published
		delivery string
		log      string
	}{
		{"none published", nil, "full", "no patch published"},
		{"corrupt", func(old, nw []byte) []byte { return randomBytes(3000, 5) }, "full", "patch refused"},
		{"makes too much", func(old, nw []byte) []byte { p, _ := packaging.MakePatch(old, append(nw, 'x')); return p }, "full", "makes"},
		{"another old file", func(old, nw []byte) []byte { p, _ := packaging.MakePatch(randomBytes(len(old), 3), nw); return p }, "full", "patch refused"},
		{"larger than the file", func(old, nw []byte) []byte { return randomBytes(len(nw)+10, 6) }, "full", "at most"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, old, _ := deltaWorld(t)
			if c.patch != nil {
				os.WriteFile(w.patchPath(old), c.patch(old, w.fileOf("scoreboard_1.5.0")), 0o644)
			}
			r, res := w.checkJSON()
			if sb := res.Apps["scoreboard"]; r.code != 0 || sb.Delivery != c.delivery || !strings.Contains(r.stderr, c.log) {
				t.Fatalf("exit %d, scoreboard %+v, want %s and a log saying %q\n%s", r.code, sb, c.delivery, c.log, r.stderr)
			}
			w.mustAgent("verify")
		})
	}
	for _, ignore := range []bool{false, true} {
		w, old, nw := deltaWorld(t)
		p, _ := packaging.MakePatch(old, nw)
		p = append(p, randomBytes(0, 1)...)
		os.WriteFile(w.patchPath(old), p, 0o644)
		prefix := "/firmware/scoreboard_1.5.0.from-"
		w.srv.SetFaults(testserver.Faults{PathPrefix: prefix, CloseAfter: int64(len(p) / 2)})
		if r := w.agent(nil, "check", "--once"); r.code == 0 {
			t.Fatalf("a cut transfer succeeded:\n%s", r.stderr)
		}
		first := w.srv.Stats().BytesByPath["/delta"]
		w.srv.SetFaults(testserver.Faults{PathPrefix: prefix, IgnoreRange: ignore})
		r, res := w.checkJSON()
		if sb := res.Apps["scoreboard"]; r.code != 0 || sb.Delivery != "patch" {
			t.Fatalf("ignore Range %v: exit %d, scoreboard %+v\n%s", ignore, r.code, sb, r.stderr)
		}
		total := w.srv.Stats().BytesByPath["/delta"]
		if !ignore && total != int64(len(p)) {
			t.Fatalf("resumed: %d patch bytes on the wire (first %d) for a %d-byte patch", total, first, len(p))
		}
		if ignore && !strings.Contains(r.stderr, "resume refused by the server") {
			t.Fatalf("a server ignoring Range: no restart said\n%s", r.stderr)
		}
		w.mustAgent("verify")
	}
}

func (w *world) fileOf(key string) []byte {
	b, err := os.ReadFile(filepath.Join(w.cat.Dir(), "blobs", key))
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// --dry-run says a patch would be used and how big it is; status and the metrics tell what
// the update cost.
func TestPatchReported(t *testing.T) {
	w, old, nw := deltaWorld(t)
	p, _ := packaging.MakePatch(old, nw)
	os.WriteFile(w.patchPath(old), p, 0o644)
	if r := w.mustAgent("check", "--once", "--dry-run"); !strings.Contains(r.stdout, "as a ") || !strings.Contains(r.stdout, "patch") {
		t.Fatalf("dry run:\n%s", r.stdout)
	}
	w.mustAgent("check", "--once")
	st := w.mustAgent("status")
	if !strings.Contains(st.stdout, "scoreboard: patch, "+strconv.Itoa(len(p))+" of "+strconv.Itoa(len(nw))+" bytes downloaded") {
		t.Fatalf("status:\n%s", st.stdout)
	}
}

// Signed URLs (seeds 003/004): the entry's download URL signed with a custom policy for the
// object and what is beside it; the patch is fetched with the same query and verified by
// the edge; an unsigned patch request is refused (403).
func TestPatchThroughSignedURLs(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldWith(t, 256<<10, "#metadata\n", testserver.Options{
		SignedURLKeys: map[string]*rsa.PublicKey{"KSIGN": &key.PublicKey},
		URLSigner:     &testserver.URLSigner{KeyPairID: "KSIGN", Key: key, TTL: time.Hour, Now: time.Now, Prefix: true}})
	w.mustAgent("check", "--once")
	old := w.fileOf(w.row("scoreboard", "prod").Key())
	nw := append([]byte(nil), old...)
	copy(nw[100:], randomBytes(2000, 8))
	w.release("scoreboard", "1.5.0", nw, 50)
	p, _ := packaging.MakePatch(old, nw)
	os.WriteFile(w.patchPath(old), p, 0o644)
	if resp, err := http.Get(w.base + "/firmware/scoreboard_1.5.0" + packaging.PatchSuffix(sha256hex(old))); err != nil || resp.StatusCode != 403 {
		t.Fatalf("an unsigned patch request: %v %v", resp, err)
	}
	r, res := w.checkJSON()
	if sb := res.Apps["scoreboard"]; r.code != 0 || sb.Delivery != "patch" || sb.Downloaded != int64(len(p)) {
		t.Fatalf("exit %d, scoreboard %+v\n%s", r.code, sb, r.stderr)
	}
}

// A process killed while applying a patch (a whole-file patch holds the old file and its
// window in memory: the OOM killer's pick) does not try it again on restart, which could
// loop: the next check fetches the whole file, says why, and the install verifies.
func TestPatchInterruptedNotRetried(t *testing.T) {
	w, old, _ := deltaWorld(t)
	w.publishPatch(old)
	if r := w.agent([]string{"OTA_AGENT_TEST_CRASH_AFTER=patch-applying"}, "check", "--once"); r.code != 99 {
		t.Fatalf("crash hook at patch-applying: exit %d\n%s", r.code, r.stderr)
	}
	w.wholeSlot()
	r, res := w.checkJSON()
	if sb := res.Apps["scoreboard"]; r.code != 0 || sb.Delivery != "full" || !strings.Contains(r.stderr, "interrupted last time") {
		t.Fatalf("exit %d, scoreboard %+v\n%s", r.code, sb, r.stderr)
	}
	w.mustAgent("verify")
	if left, _ := filepath.Glob(filepath.Join(w.state, "downloads", "*")); len(left) > 0 {
		t.Fatalf("downloads left behind: %v", left)
	}
}
