package delivery

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/testenv"
	"github.com/ota-agent/ota-agent/packaging"
)

// cdn serves files by path; what it does not have is a 404. It counts the bytes it sends.
type cdn struct {
	mu    sync.Mutex
	files map[string][]byte
	sent  int64
}

func (c *cdn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	b, ok := c.files[strings.TrimPrefix(r.URL.Path, "/fw/")]
	c.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	d, _ := packaging.DigestReader(bytes.NewReader(b))
	w.Header().Set("ETag", `"`+d.MD5+`"`)
	cw := &countingWriter{ResponseWriter: w, c: c}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(b))
}

type countingWriter struct {
	http.ResponseWriter
	c *cdn
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	w.c.sent += int64(len(p))
	w.c.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

// fetchWorld is a state directory whose slot a holds the installed scoreboard, and a CDN.
func fetchWorld(t *testing.T, installed []byte) (*Fetcher, *cdn, *installer.Staging, *bytes.Buffer) {
	t.Helper()
	slots, st, db := testenv.StateDir(t, map[string][]byte{"scoreboard": installed})
	c := &cdn{files: map[string][]byte{}}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	cfg := &config.Config{}
	cfg.Delta.Enabled, cfg.Delta.MaxSource, cfg.Install.MaxFileSize = true, 64<<20, 1<<30
	cfg.Server.Firmware = map[string]string{"bucket": srv.URL + "/fw/"}
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	d, _ := packaging.DigestReader(bytes.NewReader(installed))
	f := New(Options{Cfg: cfg, Log: logger, HTTP: srv.Client(), Slots: slots, DB: db, HashMD5: true,
		Proto: &protocol.Client{Cfg: cfg, HTTP: srv.Client(), Log: logger}, From: "a",
		Installed: map[string]installer.App{"scoreboard": {Version: "1", SHA256: d.SHA256, MD5: d.MD5, Size: d.Size}}})
	return f, c, st, &log
}

// The strategies are tried in order and fall back along the list: a patch that is no good
// is refused, no chunk index is published, the whole file comes; every byte received is
// counted once, and each fallback is one log line saying why.
func TestFetchFallsBackAlongTheStrategies(t *testing.T) {
	old := bytes.Repeat([]byte("old scoreboard "), 2000)
	f, c, st, log := fetchWorld(t, old)
	nw := bytes.Repeat([]byte("new scoreboard "), 2000)
	d, _ := packaging.DigestReader(bytes.NewReader(nw))
	e := packaging.Entry{LatestVersion: "2", URL: "s3://bucket/scoreboard_2", StatusCode: 200, MD5: d.MD5, SHA256: d.SHA256, Size: d.Size}
	c.files["scoreboard_2"] = nw
	oldSum := packaging.SHA256Hex(old)
	c.files["scoreboard_2"+packaging.PatchSuffix(oldSum)] = []byte("not a zstd frame")
	got, via, err := f.Fetch(context.Background(), PlanItem{App: "scoreboard", Version: "2"}, e, st)
	if err != nil || got.SHA256 != d.SHA256 {
		t.Fatalf("fetch: %+v %v", got, err)
	}
	if via.Path != protocol.DeliveryFull || via.Downloaded != c.sent || via.Downloaded != int64(len(nw))+int64(len("not a zstd frame")) {
		t.Fatalf("delivery %+v; the CDN sent %d bytes", via, c.sent)
	}
	lines := strings.Count(log.String(), "falling back from")
	if lines != 2 || !strings.Contains(log.String(), "falling back from patch: patch refused") || !strings.Contains(log.String(), "falling back from chunks: no chunk index published") {
		t.Fatalf("%d fallback lines:\n%s", lines, log.String())
	}
	if _, err := st.Open(Incoming("scoreboard_2")); err != nil {
		t.Fatal("the file is not in staging")
	}
}

// A good patch is the whole story: only its bytes are received.
func TestFetchByPatch(t *testing.T) {
	old := bytes.Repeat([]byte("old scoreboard "), 2000)
	f, c, st, _ := fetchWorld(t, old)
	nw := append(append([]byte{}, old...), []byte("and a little more")...)
	d, _ := packaging.DigestReader(bytes.NewReader(nw))
	patch, err := packaging.MakePatch(old, nw)
	if err != nil {
		t.Fatal(err)
	}
	c.files["scoreboard_2"+packaging.PatchSuffix(packaging.SHA256Hex(old))] = patch
	e := packaging.Entry{LatestVersion: "2", URL: "s3://bucket/scoreboard_2", StatusCode: 200, MD5: d.MD5, SHA256: d.SHA256, Size: d.Size}
	got, via, err := f.Fetch(context.Background(), PlanItem{App: "scoreboard", Version: "2"}, e, st)
	if err != nil || got.SHA256 != d.SHA256 || via.Path != protocol.DeliveryPatch || via.Downloaded != int64(len(patch)) {
		t.Fatalf("fetch: %+v %+v %v", got, via, err)
	}
	r, _ := st.Open(Incoming("scoreboard_2"))
	b, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(b, nw) {
		t.Fatal("the patched file is not the release")
	}
}
