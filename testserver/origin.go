package testserver

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver/reference"
)

// serveOrigin is the origin behind the edge: the reference application over the catalog,
// with the origin faults a test set (SetOriginFault).
func (s *Server) serveOrigin(req *reference.Request) *reference.Reply {
	s.stats.add(func(st *Stats) { st.OriginRequests++ })
	s.mu.RLock()
	delay, status := s.originDelay, s.originStatus
	s.mu.RUnlock()
	time.Sleep(delay)
	if status != 0 {
		return reference.HTML(status, fmt.Sprintf("<!doctype html>\n<title>%d</title>\n", status))
	}
	app := &reference.App{Lambda: s.opts.Origin == OriginLambda, Rows: s.selectRows}
	if !s.opts.ReferenceOnly {
		app.Extend = s.extend
	}
	return app.Serve(req)
}

// originRequest is the viewer's request as the edge forwards it (raw: its header lines as
// sent).
func (s *Server) originRequest(r *http.Request, raw [][2]string) *reference.Request {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &reference.Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Headers: raw, Base: scheme + "://" + r.Host}
}

// extend adds protocol.md 3.3's fields, which the unmodified reference never sends.
func (s *Server) extend(e *packaging.Entry, r Row, base string) {
	e.MD5, e.SHA256, e.Size = r.MD5, r.SHA256, r.Size
	e.Serial, e.Sig, e.KeyID, e.Class, e.Sigs = r.Serial, r.Sig, r.KeyID, r.Class, r.Sigs
	if base != "" {
		e.Download = s.downloadURL(base + "/firmware/" + r.Key())
	}
}

// selectRows are the catalog's rows match selects, and the bucket.
func (s *Server) selectRows(match func(*Row) bool) ([]Row, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Row
	for i := range s.cat.Rows {
		if match(&s.cat.Rows[i]) {
			out = append(out, s.cat.Rows[i])
		}
	}
	return out, s.cat.Bucket
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
