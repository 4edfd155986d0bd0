package testserver

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ota-agent/ota-agent/testserver/cloudfront"
	"github.com/ota-agent/ota-agent/testserver/reports"
)

// Origin kinds of the reference deployment.
const (
	OriginAppRunner = "apprunner"
	OriginLambda    = "lambda"
)

// Options configure a Server. The zero value is an AppRunner origin behind the edge.
type Options struct {
	Origin        string // OriginAppRunner (default) or OriginLambda
	NoEdge        bool   // serve the origin directly
	ReferenceOnly bool   // strip protocol.md 3.3 fields: exactly what the reference sends
	SignedURLKeys map[string]*rsa.PublicKey
	URLSigner     *URLSigner // signs the entries' download URLs
	SpoolDir      string     // where the edge keeps large cached bodies (default: a temp dir)
	TLS           *TLSOptions
}

// Server is the fake deployment. Use Handler with httptest, or Serve on a listener (which
// also records header case, as Lambda@Edge sees it).
type Server struct {
	opts     Options
	mu       sync.RWMutex
	cat      *Catalog
	edge     *edge
	stats    statsBox
	faults   faultBox
	verifier *cloudfront.Verifier
	reports  *reports.Receiver // device reports: POST and GET /reports
	clockMu  sync.Mutex
	clock    func() time.Time
	ownSpool bool
	// origin-side knobs (behind the edge), for cache tests
	originDelay  time.Duration
	originStatus int
}

// SetOriginFault makes the origin wait delay before answering and, when status is not
// zero, answer that status with an HTML page: what the edge sees of a slow or broken origin.
func (s *Server) SetOriginFault(delay time.Duration, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.originDelay, s.originStatus = delay, status
}

// New makes a Server for the catalog.
func New(cat *Catalog, opts Options) (*Server, error) {
	if opts.Origin == "" {
		opts.Origin = OriginAppRunner
	}
	if opts.Origin != OriginAppRunner && opts.Origin != OriginLambda {
		return nil, fmt.Errorf("origin %q: want %s or %s", opts.Origin, OriginAppRunner, OriginLambda)
	}
	s := &Server{opts: opts, cat: cat, clock: time.Now, reports: reports.New()}
	s.faults.rng = rand.New(rand.NewPCG(1, 2))
	if opts.SpoolDir == "" {
		d, err := os.MkdirTemp("", "ota-testserver-edge-")
		if err != nil {
			return nil, err
		}
		s.opts.SpoolDir, s.ownSpool = d, true
	}
	s.edge = newEdge(s.opts.SpoolDir)
	if len(opts.SignedURLKeys) > 0 {
		s.verifier = &cloudfront.Verifier{Keys: opts.SignedURLKeys}
	}
	if opts.URLSigner != nil && opts.URLSigner.Now == nil {
		opts.URLSigner.Now = s.now
	}
	return s, nil
}

// Close removes the edge's spool files.
func (s *Server) Close() error {
	s.edge.flush()
	if s.ownSpool {
		return os.RemoveAll(s.opts.SpoolDir)
	}
	return nil
}

// SetClock replaces the server's clock (edge TTLs, Age, signed-URL expiry).
func (s *Server) SetClock(now func() time.Time) {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	s.clock = now
}

func (s *Server) now() time.Time {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	return s.clock()
}

// SetFaults replaces the fault knobs.
func (s *Server) SetFaults(f Faults) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.f = f
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Catalog returns the live catalog (read-only for callers).
func (s *Server) Catalog() *Catalog {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cat
}

// SetRow overwrites the (app, env) row or adds it, the way a publisher rolls a release out
// or back; the binary at r.File (relative to the catalog dir) is hashed now. Like the real
// service the edge keeps serving cached answers until they expire; FlushEdge invalidates.
func (s *Server) SetRow(r Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := r.Load(s.cat.Dir()); err != nil {
		return err
	}
	rows := append([]Row(nil), s.cat.Rows...)
	for i := range rows {
		if rows[i].App == r.App && rows[i].Env == r.Env {
			rows[i] = r
			s.cat = s.cat.WithRows(rows)
			return nil
		}
	}
	s.cat = s.cat.WithRows(append(rows, r))
	return nil
}

// DeleteRow removes the (app, env) row.
func (s *Server) DeleteRow(app, env string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rows []Row
	for _, r := range s.cat.Rows {
		if r.App != app || r.Env != env {
			rows = append(rows, r)
		}
	}
	s.cat = s.cat.WithRows(rows)
}

// Reload reads the catalog directory again (SIGHUP in ota-testserver).
func (s *Server) Reload() error {
	c, err := LoadCatalog(s.Catalog().Dir())
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.cat = c
	s.mu.Unlock()
	return nil
}

// FlushEdge drops every cached object.
func (s *Server) FlushEdge() { s.edge.flush() }

func (s *Server) downloadURL(u string) string {
	if s.opts.URLSigner != nil {
		return s.opts.URLSigner.Sign(u)
	}
	return u
}

// ReportsPath is where devices post reports (report.url) and the fleet view reads them.
const ReportsPath = "/reports"

// Reports is the receiver of device reports.
func (s *Server) Reports() *reports.Receiver { return s.reports }

// Handler routes like a distribution with several cache behaviours: /_stats, /reports (to
// the receiver, every method), /firmware/*, and everything else to the edge (or straight to
// the origin with NoEdge).
func (s *Server) Handler() http.Handler {
	faulty := s.withFaults(s.route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_stats" {
			s.serveStats(w)
			return
		}
		if r.URL.Path == ReportsPath { // a behaviour that forwards every method to its origin, never cached
			s.stats.add(func(st *Stats) { st.RequestsByPath[ReportsPath]++ })
			s.reports.ServeHTTP(w, r)
			return
		}
		cw := &countingWriter{ResponseWriter: w}
		defer func() {
			class := pathClass(r.URL.Path)
			s.stats.add(func(st *Stats) {
				st.Requests++
				st.RequestsByPath[class]++
				st.BytesByPath[class] += cw.n
				st.StatusCounts[fmt.Sprint(cw.status)]++
			})
		}()
		faulty(cw, r)
	})
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/firmware/") {
		s.serveFirmware(w, r)
		return
	}
	raw := rawHeaders(r)
	if !s.opts.NoEdge {
		s.serveEdge(w, r, raw)
		return
	}
	rep := s.serveOrigin(s.originRequest(r, raw))
	defer rep.Body.Close()
	for _, h := range rep.Header {
		w.Header()[h[0]] = append(w.Header()[h[0]], h[1])
	}
	if rep.Size >= 0 {
		w.Header().Set("Content-Length", itoa(rep.Size))
	}
	w.WriteHeader(rep.Status)
	if r.Method != http.MethodHead {
		n, err := ioCopy(w, rep.Body)
		s.stats.add(func(st *Stats) { st.OriginBytes += n })
		if err != nil {
			panic(http.ErrAbortHandler)
		}
	}
}

// Serve accepts connections on l until ctx ends, recording each request's header names in
// the case the client sent them.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if rc, ok := c.(*recordingConn); ok {
				return context.WithValue(ctx, rawKey{}, rc)
			}
			return ctx
		},
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	var err error
	if s.opts.TLS != nil {
		// Over TLS header case is not recorded: net/http needs the *tls.Conn itself.
		hs.TLSConfig = s.opts.TLS.Config()
		err = hs.Serve(tls.NewListener(l, hs.TLSConfig))
	} else {
		err = hs.Serve(&recordingListener{Listener: l})
	}
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

type rawKey struct{}

// net/http trims header values; the reference sends Content-Disposition with a trailing
// space, so the connection puts it back (byte-for-byte fidelity, protocol.md 1.3).
var (
	trimmedDisposition = []byte("Content-Disposition: attachment; filename=\"ota-package.tar.gz\"\r\n")
	exactDisposition   = []byte("Content-Disposition: attachment; filename=\"ota-package.tar.gz\" \r\n")
)

func (c *recordingConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("HTTP/1.")) {
		end := bytes.Index(p, []byte("\r\n\r\n"))
		if i := bytes.Index(p, trimmedDisposition); i >= 0 && i < end {
			fixed := append(append(append([]byte(nil), p[:i]...), exactDisposition...), p[i+len(trimmedDisposition):]...)
			if _, err := c.Conn.Write(fixed); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

type recordingListener struct{ net.Listener }

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c}, nil
}

// recordingConn keeps the bytes read since the last request's header block, so the handler
// can see header names as sent (net/http canonicalises them).
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if len(c.buf) < 256<<10 {
		c.buf = append(c.buf, p[:n]...)
	}
	c.mu.Unlock()
	return n, err
}

// take finds the header block of the request whose line is reqLine and forgets it and
// everything before it.
func (c *recordingConn) take(reqLine string) [][2]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := bytes.Index(c.buf, []byte(reqLine))
	if i < 0 {
		return nil
	}
	end := bytes.Index(c.buf[i:], []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	block := string(c.buf[i : i+end])
	c.buf = append([]byte(nil), c.buf[i+end+4:]...)
	var out [][2]string
	for _, line := range strings.Split(block, "\r\n")[1:] {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out = append(out, [2]string{k, strings.TrimSpace(v)})
		}
	}
	return out
}

// rawHeaders returns the request's headers with names as sent when known; over HTTP/2 they
// are lower-case by the protocol; elsewhere, as net/http canonicalised them.
func rawHeaders(r *http.Request) [][2]string {
	if rc, ok := r.Context().Value(rawKey{}).(*recordingConn); ok && r.ProtoMajor == 1 {
		if h := rc.take(r.Method + " " + r.RequestURI + " HTTP/"); h != nil {
			return h
		}
	}
	var out [][2]string
	for k, vs := range r.Header {
		if r.ProtoMajor == 2 {
			k = strings.ToLower(k)
		}
		for _, v := range vs {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}
