package testserver

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Stats are the server's counters, served at GET /_stats and returned by Server.Stats.
type Stats struct {
	Requests       int64            `json:"requests"`
	OriginRequests int64            `json:"origin_requests"`
	OriginBytes    int64            `json:"origin_bytes"` // body bytes the origin produced
	EdgeHits       int64            `json:"edge_hits"`
	EdgeMisses     int64            `json:"edge_misses"`
	EdgeErrors     int64            `json:"edge_errors"`
	Collapsed      int64            `json:"collapsed"`
	FaultsInjected int64            `json:"faults_injected"`
	RequestsByPath map[string]int64 `json:"requests_by_path"`
	BytesByPath    map[string]int64 `json:"bytes_by_path"`
	StatusCounts   map[string]int64 `json:"status_counts"`
}

type statsBox struct {
	mu sync.Mutex
	s  Stats
}

func (b *statsBox) add(f func(*Stats)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.s.RequestsByPath == nil {
		b.s.RequestsByPath, b.s.BytesByPath, b.s.StatusCounts = map[string]int64{}, map[string]int64{}, map[string]int64{}
	}
	f(&b.s)
}

func (b *statsBox) snapshot() Stats {
	var out Stats
	b.add(func(s *Stats) {
		out = *s
		out.RequestsByPath, out.BytesByPath, out.StatusCounts = clone(s.RequestsByPath), clone(s.BytesByPath), clone(s.StatusCounts)
	})
	return out
}

func clone(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// pathClass groups request paths for the counters: the first path element.
func pathClass(p string) string {
	if p == "/firmware/ota-keys.release" || p == "/firmware/ota-timestamp.release" {
		return "/trust" // the trust documents, apart from the binaries and their statements
	}
	if strings.HasPrefix(p, "/firmware/") && (strings.Contains(p, ".from-") && (strings.HasSuffix(p, ".zst") || strings.HasSuffix(p, ".blocks")) || strings.HasSuffix(p, ".chunks")) {
		return "/delta" // patches and chunk indexes (ota-release delta, index)
	}
	p = strings.TrimPrefix(p, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	return "/" + p
}

// countingWriter counts the body bytes and the status of one response.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = 200
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) serveStats(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.Stats())
}

func ioCopy(w http.ResponseWriter, r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	return io.CopyBuffer(w, r, buf)
}
