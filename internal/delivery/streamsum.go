package delivery

import (
	"io"
	"net/http"
	"sync"

	"github.com/ota-agent/ota-agent/packaging"
)

// streamSum hashes a download from byte 0 as grab reads it from the network, so the file it
// writes need not be read again to be verified (metadata mode hashed every file twice: the
// write, then a read). Only the body of a 200 is hashed; a resumed download's prefix is on
// disk only, so its file is read to be hashed as before. grab writes every byte it reads or
// fails, so a whole body of the release's size is the file's digest.
type streamSum struct {
	withMD5 bool

	mu     sync.Mutex
	d      *packaging.Digester
	bodies int // 200 answers seen: more than one voids the sum
}

// client is hc hashing the 200 answers it receives (hc itself for a resume, or no sum).
func (s *streamSum) client(hc *http.Client, offset int64) *http.Client {
	if s == nil || offset > 0 {
		return hc
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c := *hc
	c.Transport = &sumTransport{base: base, s: s}
	return &c
}

type sumTransport struct {
	base http.RoundTripper
	s    *streamSum
}

func (t *sumTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies++
	if s.d != nil {
		s.d.Sum() // stops its hashing goroutine; the sum is void anyway
	}
	s.d = packaging.NewDigesterFor(s.withMD5)
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(resp.Body, s.d), resp.Body}
	return resp, nil
}

// digests is the streamed digest, ok when exactly one 200 body of size bytes was read
// (call it once grab is done: the body is no longer being read).
func (s *streamSum) digests(size int64) (packaging.Digests, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return packaging.Digests{}, false
	}
	d := s.d.Sum()
	s.d = nil
	return d, s.bodies == 1 && d.Size == size
}
