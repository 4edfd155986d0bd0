package delivery

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
)

// A download from byte 0 is hashed as it arrives, so its file is not read again: the digest
// is the release's, and only one whole 200 body counts. A resume, a 206, two bodies or a
// body cut short leave no streamed digest (the file is then read to be hashed).
func TestStreamSum(t *testing.T) {
	data := make([]byte, 3<<20+17)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "scoreboard_9", time.Time{}, bytes.NewReader(data)) // Range: 206
	}))
	defer srv.Close()
	url := srv.URL + "/firmware/scoreboard_9"
	want, _ := packaging.DigestReader(bytes.NewReader(data))
	size := int64(len(data))
	get := func(s *streamSum, offset int64, rng string, read int64) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := s.client(http.DefaultClient, offset).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if read < 0 {
			io.Copy(io.Discard, resp.Body)
		} else {
			io.CopyN(io.Discard, resp.Body, read)
		}
	}
	s := &streamSum{withMD5: true}
	get(s, 0, "", -1)
	if d, ok := s.digests(size); !ok || d != want {
		t.Errorf("fresh download: %+v %v, want %+v", d, ok, want)
	}
	s = &streamSum{}
	get(s, 0, "", -1)
	if d, ok := s.digests(size); !ok || d.SHA256 != want.SHA256 || d.MD5 != "" {
		t.Errorf("fresh download, SHA-256 only: %+v %v", d, ok)
	}
	for _, c := range []struct {
		name   string
		offset int64
		rng    string
		times  int
		read   int64
	}{
		{"a resume", 100, "bytes=100-", 1, -1},
		{"a 206", 0, "bytes=100-", 1, -1},
		{"two bodies", 0, "", 2, -1},
		{"a body cut short", 0, "", 1, 1000},
	} {
		s := &streamSum{withMD5: true}
		for i := 0; i < c.times; i++ {
			get(s, c.offset, c.rng, c.read)
		}
		if d, ok := s.digests(size); ok {
			t.Errorf("%s: streamed digest %+v taken as the file's", c.name, d)
		}
	}
	var none *streamSum
	if none.client(http.DefaultClient, 0) != http.DefaultClient {
		t.Error("no sum: the client is not the agent's own")
	}
}
