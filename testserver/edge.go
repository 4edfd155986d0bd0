package testserver

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ota-agent/ota-agent/testserver/edgecache"
)

// Edge limits of CloudFront (protocol.md 2).
const (
	maxURLBytes     = 8192
	maxRequestBytes = 20480
	maxLambdaBody   = 1 << 20
)

type cacheEntry struct {
	status  int
	header  [][2]string
	body    *edgecache.Spool
	stored  time.Time
	expires time.Time
}

type flight struct {
	done  chan struct{}
	entry *cacheEntry
}

// edge is the fake CloudFront cache in front of the origin.
type edge struct {
	mu      sync.Mutex
	cache   map[string]*cacheEntry
	flights map[string]*flight
	dir     string
	viaHex  string
}

func newEdge(dir string) *edge {
	b := make([]byte, 16)
	rand.Read(b)
	return &edge{cache: map[string]*cacheEntry{}, flights: map[string]*flight{}, dir: dir, viaHex: hex.EncodeToString(b)}
}

// flush forgets every cached object (a CloudFront invalidation of /*).
func (e *edge) flush() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, ent := range e.cache {
		ent.body.Remove()
		delete(e.cache, k)
	}
}

// cacheKey: path + query as sent + If-None-Match verbatim (every line of it, so two
// requests the origin answers differently never share an entry) + normalised Accept-Encoding.
func cacheKey(r *http.Request, raw [][2]string) string {
	inm, ae := "", ""
	for _, h := range raw {
		switch strings.ToLower(h[0]) {
		case "if-none-match":
			inm += h[1] + "\n"
		case "accept-encoding":
			if strings.Contains(strings.ToLower(h[1]), "gzip") {
				ae = "gzip"
			}
		}
	}
	return r.URL.Path + "?" + r.URL.RawQuery + "\x00" + inm + "\x00" + ae
}

func (s *Server) serveEdge(w http.ResponseWriter, r *http.Request, raw [][2]string) {
	e := s.edge
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.edgeError(w, 403, "This distribution is not configured to allow the HTTP request method that was used for this request. The distribution supports only cachable requests.")
		return
	}
	if len(r.RequestURI) > maxURLBytes {
		s.edgeError(w, 414, "The URL is too long.")
		return
	}
	size := len(r.Method) + len(r.RequestURI) + 11
	for _, h := range raw {
		size += len(h[0]) + len(h[1]) + 4
	}
	if size > maxRequestBytes {
		s.edgeError(w, 413, "The request is too large: request line and headers exceed 20,480 bytes.")
		return
	}
	if s.opts.Origin == OriginLambda && r.URL.RawQuery == "" {
		s.edgeError(w, 502, "The Lambda function returned an invalid response.")
		return
	}
	key := cacheKey(r, raw)
	now := s.now()
	e.mu.Lock()
	ent := e.cache[key]
	if ent != nil && now.Before(ent.expires) {
		e.mu.Unlock()
		s.stats.add(func(st *Stats) { st.EdgeHits++ })
		s.serveEntry(w, r, ent, "Hit")
		return
	}
	if f := e.flights[key]; f != nil {
		e.mu.Unlock()
		<-f.done
		if f.entry == nil {
			s.edgeError(w, 502, "The origin connection failed.")
			return
		}
		s.stats.add(func(st *Stats) { st.EdgeHits++; st.Collapsed++ })
		s.serveEntry(w, r, f.entry, "Hit")
		return
	}
	f := &flight{done: make(chan struct{})}
	e.flights[key] = f
	e.mu.Unlock()
	s.stats.add(func(st *Stats) { st.EdgeMisses++ })
	defer func() { // also when the fill panicked (a broken origin stream): its waiters get a 502
		e.mu.Lock()
		delete(e.flights, key)
		e.mu.Unlock()
		close(f.done)
	}()
	stored, cut := s.fetch(w, r, raw, ent)
	e.mu.Lock()
	if stored != nil && stored != ent {
		if old := e.cache[key]; old != nil {
			old.body.Remove()
		}
		if !stored.expires.IsZero() {
			e.cache[key] = stored
		}
	}
	f.entry = stored
	e.mu.Unlock()
	if cut {
		panic(http.ErrAbortHandler) // the fault cut the viewer's connection
	}
}

// fetch asks the origin, streams the answer to the viewer while spooling it, and returns the
// entry (expires zero when it may not be cached). An expired entry is served instead of a
// 5xx. A broken origin stream returns nil and aborts the viewer's connection; cut says a
// fault cut the viewer's (the fill went on).
func (s *Server) fetch(w http.ResponseWriter, r *http.Request, raw [][2]string, stale *cacheEntry) (*cacheEntry, bool) {
	rep := s.serveOrigin(s.originRequest(r, raw))
	defer rep.Body.Close()
	if rep.Status >= 500 && stale != nil {
		s.serveEntry(w, r, stale, "RefreshHit")
		return stale, false
	}
	if s.opts.Origin == OriginLambda && rep.Size > maxLambdaBody {
		s.edgeError(w, 502, "The Lambda function returned a response body larger than 1 MB.")
		return nil, false
	}
	now := s.now()
	ent := &cacheEntry{status: rep.Status, header: rep.Header, body: edgecache.NewSpool(s.edge.dir), stored: now}
	if ttl, ok := cacheTTL(rep.Status, rep.Get("Cache-Control")); ok {
		ent.expires = now.Add(ttl)
	}
	hdr := s.edgeHeaders(w, rep.Header, rep.Status, "Miss")
	if rep.Size >= 0 {
		hdr.Set("Content-Length", itoa(rep.Size))
	}
	w.WriteHeader(rep.Status)
	var client io.Writer = w
	if r.Method == http.MethodHead {
		client = io.Discard
	}
	viewer := &lenient{w: client}
	n, err := io.Copy(ent.body, io.TeeReader(rep.Body, viewer))
	s.stats.add(func(st *Stats) { st.OriginBytes += n })
	if cerr := ent.body.Finish(); err == nil {
		err = cerr
	}
	if err != nil {
		ent.body.Remove()
		panic(http.ErrAbortHandler)
	}
	return ent, viewer.cut
}

// lenient keeps the cache filling when the viewer goes away, or its connection is cut by
// an injected fault (which aborts the viewer's answer with a panic: cut, the viewer's
// connection is aborted once the fill is done).
type lenient struct {
	w           io.Writer
	failed, cut bool
}

func (l *lenient) Write(p []byte) (int, error) {
	if !l.failed {
		func() {
			defer func() {
				if recover() != nil {
					l.failed, l.cut = true, true
				}
			}()
			if _, err := l.w.Write(p); err != nil {
				l.failed = true
			}
		}()
	}
	return len(p), nil
}

// cacheTTL: max-age clamped to [1, 100] s, 30 s without one; errors per CloudFront's list,
// at least 10 s; 416 and the rest never.
func cacheTTL(status int, cc string) (time.Duration, bool) {
	age, has := maxAge(cc)
	ttl := 30 * time.Second
	if has {
		ttl = time.Duration(min(max(age, 1), 100)) * time.Second
	}
	switch status {
	case 200, 203, 300, 301, 304, 410:
		return ttl, true
	case 404, 414, 500, 501, 502, 503, 504:
		if !has {
			return 10 * time.Second, true
		}
		return max(ttl, 10*time.Second), true
	case 400, 403, 405, 412, 415:
		return max(ttl, 10*time.Second), has
	}
	return 0, false
}

func maxAge(cc string) (int, bool) {
	for _, d := range strings.Split(cc, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(d), "=")
		if ok && strings.EqualFold(k, "max-age") {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return n, true
			}
		}
	}
	return 0, false
}

// serveEntry answers from the cache, with a single Range honoured on the stored bytes.
func (s *Server) serveEntry(w http.ResponseWriter, r *http.Request, ent *cacheEntry, how string) {
	body, err := ent.body.Open()
	if err != nil {
		s.edgeError(w, 502, "The cached object is gone.")
		return
	}
	defer body.Close()
	hdr := s.edgeHeaders(w, ent.header, ent.status, how)
	hdr.Set("Age", strconv.Itoa(int(s.now().Sub(ent.stored)/time.Second)))
	size := ent.body.Len()
	status, start, n := ent.status, int64(0), size
	if rg := r.Header.Get("Range"); rg != "" && ent.status == 200 {
		a, b, ok := parseSingleRange(rg, size)
		switch {
		case ok && a >= size:
			hdr.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			hdr.Set("Content-Length", "0")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		case ok:
			status, start, n = http.StatusPartialContent, a, b-a+1
			hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, size))
		}
	}
	hdr.Set("Content-Length", itoa(n))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.Copy(w, io.NewSectionReader(body, start, n))
	}
}

// parseSingleRange reads "bytes=a-b", "bytes=a-" or "bytes=-n". Anything else, several
// ranges included, is not ok: CloudFront then sends the whole object.
func parseSingleRange(h string, size int64) (int64, int64, bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	as, bs, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false
	}
	if as == "" {
		n, err := strconv.ParseInt(bs, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		return max(size-n, 0), size - 1, true
	}
	a, err := strconv.ParseInt(as, 10, 64)
	if err != nil || a < 0 {
		return 0, 0, false
	}
	b := size - 1
	if bs != "" {
		if b, err = strconv.ParseInt(bs, 10, 64); err != nil || b < a {
			return 0, 0, false
		}
		b = min(b, size-1)
	}
	return a, b, true
}

// edgeHeaders copies the origin's headers and adds CloudFront's own.
func (s *Server) edgeHeaders(w http.ResponseWriter, origin [][2]string, status int, how string) http.Header {
	hdr := w.Header()
	for _, h := range origin {
		hdr[h[0]] = append(hdr[h[0]], h[1])
	}
	if status >= 400 {
		how = "Error"
	}
	hdr["X-Cache"] = []string{how + " from cloudfront"}
	hdr["Via"] = []string{"1.1 " + s.edge.viaHex + ".cloudfront.net (CloudFront)"}
	hdr["X-Amz-Cf-Pop"] = []string{"LOC50-P1"}
	id := make([]byte, 42)
	rand.Read(id)
	hdr["X-Amz-Cf-Id"] = []string{base64.URLEncoding.EncodeToString(id)}
	return hdr
}

const cfErrorPage = `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">
<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">
<TITLE>ERROR: The request could not be satisfied</TITLE>
</HEAD><BODY>
<H1>%d ERROR</H1>
<H2>The request could not be satisfied.</H2>
<HR noshade size="1px">
%s
<BR clear="all">
<HR noshade size="1px">
<PRE>
Generated by cloudfront (CloudFront)
</PRE>
<ADDRESS>
</ADDRESS>
</BODY></HTML>`

// edgeError is an answer CloudFront makes itself.
func (s *Server) edgeError(w http.ResponseWriter, status int, msg string) {
	s.stats.add(func(st *Stats) { st.EdgeErrors++ })
	body := fmt.Sprintf(cfErrorPage, status, msg)
	hdr := s.edgeHeaders(w, [][2]string{{"Server", "CloudFront"}, {"Content-Type", "text/html"}}, status, "Error")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}
