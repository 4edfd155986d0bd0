package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

// originRequest is what reaches the origin: the viewer's request as the edge forwards it,
// header names in the case the client sent them (Lambda@Edge sees that case).
type originRequest struct {
	method   string
	path     string
	rawQuery string
	headers  [][2]string
	base     string // scheme://host of the distribution, for download URLs
}

// header returns the first value of name, compared case-insensitively like Flask's headers,
// or exactly like the reference's Lambda handler (`{v[0]['key']: v[0]['value']}`).
func (r *originRequest) header(name string, exactCase bool) string {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			if exactCase && h[0] != name {
				return ""
			}
			return h[1]
		}
	}
	return ""
}

// joined is every value of a header, in order, joined by "," as a WSGI server joins
// repeated lines.
func (r *originRequest) joined(name string) string {
	var vals []string
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			vals = append(vals, h[1])
		}
	}
	return strings.Join(vals, ",")
}

// reply is an origin's answer: headers in the order sent, and a body read once.
type reply struct {
	status int
	header [][2]string
	body   io.ReadCloser
	size   int64 // -1 when streamed
}

func (r *reply) get(name string) string {
	for _, h := range r.header {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

func bytesReply(status int, header [][2]string, body []byte) *reply {
	if body == nil {
		body = []byte{}
	}
	return &reply{status: status, header: header, body: io.NopCloser(bytes.NewReader(body)), size: int64(len(body))}
}

const (
	htmlType = "text/html; charset=utf-8"
	html404  = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n"
	html405  = "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n"
	html500  = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n"
)

func htmlReply(status int, page string) *reply {
	return bytesReply(status, [][2]string{{"Content-Type", htmlType}}, []byte(page))
}

// serveOrigin is the reference application: Flask routes in AppRunner mode, the
// origin-request function in Lambda mode (any path is the endpoint).
func (s *Server) serveOrigin(req *originRequest) *reply {
	s.stats.add(func(st *Stats) { st.OriginRequests++ })
	s.mu.RLock()
	delay, status := s.originDelay, s.originStatus
	s.mu.RUnlock()
	time.Sleep(delay)
	if status != 0 {
		return htmlReply(status, fmt.Sprintf("<!doctype html>\n<title>%d</title>\n", status))
	}
	lambda := s.opts.Origin == OriginLambda
	if !lambda {
		switch {
		case req.path != "/" && req.path != "/package":
			return htmlReply(404, html404)
		case req.method != "GET" && req.method != "HEAD":
			r := htmlReply(405, html405)
			r.header = append(r.header, [2]string{"Allow", "GET, HEAD, OPTIONS"})
			return r
		case req.path == "/":
			return bytesReply(200, [][2]string{{"Content-Type", htmlType}}, []byte("Hello World"))
		}
	}
	params, err := parseQuery(req.rawQuery, !lambda)
	if err != nil {
		return htmlReply(500, html500)
	}
	sel, err := parseSelection(params, lambda)
	var se *statusError
	switch {
	case errors.As(err, &se):
		return jsonError(se.status, se.msg)
	case err != nil:
		return htmlReply(500, html500)
	}
	// Flask (behind its WSGI server) sees repeated header lines joined by ","; the Lambda
	// event handler reads the first value only (protocol.md 1.4).
	inm := req.header("If-None-Match", lambda)
	if !lambda {
		inm = req.joined("If-None-Match")
	}
	var etags []string
	if inm != "" {
		etags = strings.Split(inm, ",")
	}
	return s.packageReply(sel, etags, req.base)
}

func jsonError(status int, msg string) *reply {
	body := `{"error": ` + packaging.QuotePy(msg) + `}`
	return bytesReply(status, [][2]string{{"Cache-Control", "max-age=100"}, {"Content-Type", "application/json"}}, []byte(body))
}

func notModified() *reply {
	return bytesReply(304, [][2]string{{"Cache-Control", "max-age=100"}}, nil)
}

// packageReply is build_packages_payload: rows in catalog order, a row whose md5 is an
// element of If-None-Match is left out and marked 304, the JSON keeps the last row of an app.
func (s *Server) packageReply(sel *selection, etags []string, base string) *reply {
	rows := s.selectRows(sel)
	if len(rows) == 0 {
		return jsonError(404, msgNotFound)
	}
	details := &packaging.Details{}
	var send []Row
	for _, r := range rows {
		e := packaging.Entry{LatestVersion: r.Version, URL: "s3://" + s.bucket() + "/" + r.Key(), StatusCode: 200}
		for _, t := range etags {
			if t == r.MD5 {
				e.StatusCode = 304
			}
		}
		if e.StatusCode == 200 {
			send = append(send, r)
		}
		if !s.opts.ReferenceOnly {
			s.extend(&e, r, base)
		}
		details.Set(r.App, e)
	}
	if len(send) == 0 {
		return notModified()
	}
	if sel.payloadType == payloadMetadata {
		body := details.Marshal()
		return bytesReply(200, [][2]string{{"Cache-Control", "max-age=100"}, {"Content-Type", "application/json"}}, body)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(catalog.WritePayload(pw, send, details.Marshal(), time.Now())) }()
	return &reply{status: 200, size: -1, body: pr, header: [][2]string{
		{"Cache-Control", "max-age=100"},
		{"Content-Type", "application/x-gzip"},
		{"Content-Encoding", "gzip"},
		{"Content-Disposition", `attachment; filename="ota-package.tar.gz" `},
	}}
}

// extend adds protocol.md 3.3's fields, which the unmodified reference never sends.
func (s *Server) extend(e *packaging.Entry, r Row, base string) {
	e.MD5, e.SHA256, e.Size = r.MD5, r.SHA256, r.Size
	e.Serial, e.Sig, e.KeyID, e.Class, e.Sigs = r.Serial, r.Sig, r.KeyID, r.Class, r.Sigs
	if base != "" {
		e.Download = s.downloadURL(base + "/firmware/" + r.Key())
	}
}

func (s *Server) selectRows(sel *selection) []Row {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Row
	for i := range s.cat.Rows {
		if sel.matches(&s.cat.Rows[i]) {
			out = append(out, s.cat.Rows[i])
		}
	}
	return out
}

func (s *Server) bucket() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cat.Bucket
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
