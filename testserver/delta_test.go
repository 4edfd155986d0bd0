package testserver

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/ota-agent/ota-agent/packaging"
)

// The sample catalog publishes deltas: each beta binary is its prod one with the middle
// eighth changed, with a patch from prod and a chunk index beside it; the firmware CDN serves
// them (counted as /delta) and the patch makes the beta bytes from the prod ones.
func TestSamplePublishesDeltas(t *testing.T) {
	cat, err := WriteSample(t.TempDir(), 128<<10, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cat, Options{SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	var prod, beta Row
	for _, r := range cat.Rows {
		if r.App == "scoreboard" && r.Env == "prod" {
			prod = r
		}
		if r.App == "scoreboard" && r.Env == "beta" {
			beta = r
		}
	}
	old, _ := os.ReadFile(filepath.Join(cat.Dir(), prod.File))
	nw, _ := os.ReadFile(filepath.Join(cat.Dir(), beta.File))
	resp, body := httpGet(t, ts.URL+"/firmware/"+beta.Key()+packaging.PatchSuffix(packaging.SHA256Hex(old)))
	if resp.StatusCode != 200 || len(body) > len(nw)/4 {
		t.Fatalf("patch: %d, %d bytes for %d", resp.StatusCode, len(body), len(nw))
	}
	var out bytes.Buffer
	if _, err := packaging.ApplyPatch(&out, bytes.NewReader(body), old, int64(len(nw))); err != nil || !bytes.Equal(out.Bytes(), nw) {
		t.Fatalf("the sample patch does not make the beta binary: %v", err)
	}
	resp, body = httpGet(t, ts.URL+"/firmware/"+beta.Key()+packaging.ChunkSuffix)
	if _, err := packaging.ParseChunkIndex(bytes.NewReader(body), int64(len(nw))); resp.StatusCode != 200 || err != nil {
		t.Fatalf("index: %d %v", resp.StatusCode, err)
	}
	if st := s.Stats(); st.RequestsByPath["/delta"] != 2 {
		t.Fatalf("stats: %+v", st.RequestsByPath)
	}
}
