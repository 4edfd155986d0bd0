// Package reference is the unmodified reference application of the deployment: the Flask
// routes AppRunner runs, or the Lambda@Edge origin-request function, answering from the
// catalog as DynamoDB would (protocol.md 1). It replays the golden answers byte for byte;
// the test server puts its CloudFront edge and firmware CDN in front of it.
package reference

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

// Request is what reaches the origin: the viewer's request as the edge forwards it, header
// names in the case the client sent them (Lambda@Edge sees that case).
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Headers  [][2]string
	Base     string // scheme://host of the distribution, for download URLs
}

// header returns the first value of name, compared case-insensitively like Flask's headers,
// or exactly like the reference's Lambda handler (`{v[0]['key']: v[0]['value']}`).
func (r *Request) header(name string, exactCase bool) string {
	for _, h := range r.Headers {
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
func (r *Request) joined(name string) string {
	var vals []string
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			vals = append(vals, h[1])
		}
	}
	return strings.Join(vals, ",")
}

// Reply is an origin's answer: headers in the order sent, and a body read once.
type Reply struct {
	Status int
	Header [][2]string
	Body   io.ReadCloser
	Size   int64 // -1 when streamed
}

// Get is the first value of the header name.
func (r *Reply) Get(name string) string {
	for _, h := range r.Header {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

func bytesReply(status int, header [][2]string, body []byte) *Reply {
	if body == nil {
		body = []byte{}
	}
	return &Reply{Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Size: int64(len(body))}
}

// HTMLType is the Content-Type of the HTML pages Flask serves.
const HTMLType = "text/html; charset=utf-8"

const (
	htmlType = HTMLType
	html404  = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n"
	html405  = "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n"
	html500  = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n"
)

// HTML is an HTML page with status.
func HTML(status int, page string) *Reply {
	return bytesReply(status, [][2]string{{"Content-Type", htmlType}}, []byte(page))
}

// App is the reference application over a deployment's rows.
type App struct {
	Lambda bool // the Lambda@Edge origin-request function (else AppRunner's Flask routes)
	// Rows are the catalog rows match selects, in catalog order, and the bucket they are in.
	Rows func(match func(*catalog.Row) bool) ([]catalog.Row, string)
	// Extend adds this project's fields to an entry (protocol.md 3.3); nil is the
	// unmodified reference, which never sends them.
	Extend func(e *packaging.Entry, r catalog.Row, base string)
}

// Serve answers one request: Flask routes in AppRunner mode, the origin-request function in
// Lambda mode (any path is the endpoint).
func (a *App) Serve(req *Request) *Reply {
	if !a.Lambda {
		switch {
		case req.Path != "/" && req.Path != "/package":
			return HTML(404, html404)
		case req.Method != "GET" && req.Method != "HEAD":
			r := HTML(405, html405)
			r.Header = append(r.Header, [2]string{"Allow", "GET, HEAD, OPTIONS"})
			return r
		case req.Path == "/":
			return bytesReply(200, [][2]string{{"Content-Type", htmlType}}, []byte("Hello World"))
		}
	}
	params, err := parseQuery(req.RawQuery, !a.Lambda)
	if err != nil {
		return HTML(500, html500)
	}
	sel, err := parseSelection(params, a.Lambda)
	var se *statusError
	switch {
	case errors.As(err, &se):
		return jsonError(se.status, se.msg)
	case err != nil:
		return HTML(500, html500)
	}
	// Flask (behind its WSGI server) sees repeated header lines joined by ","; the Lambda
	// event handler reads the first value only (protocol.md 1.4).
	inm := req.header("If-None-Match", a.Lambda)
	if !a.Lambda {
		inm = req.joined("If-None-Match")
	}
	var etags []string
	if inm != "" {
		etags = strings.Split(inm, ",")
	}
	return a.packageReply(sel, etags, req.Base)
}

func jsonError(status int, msg string) *Reply {
	body := `{"error": ` + packaging.QuotePy(msg) + `}`
	return bytesReply(status, [][2]string{{"Cache-Control", "max-age=100"}, {"Content-Type", "application/json"}}, []byte(body))
}

func notModified() *Reply {
	return bytesReply(304, [][2]string{{"Cache-Control", "max-age=100"}}, nil)
}

// packageReply is build_packages_payload: rows in catalog order, a row whose md5 is an
// element of If-None-Match is left out and marked 304, the JSON keeps the last row of an app.
func (a *App) packageReply(sel *selection, etags []string, base string) *Reply {
	rows, bucket := a.Rows(sel.matches)
	if len(rows) == 0 {
		return jsonError(404, msgNotFound)
	}
	details := &packaging.Details{}
	var send []catalog.Row
	for _, r := range rows {
		e := packaging.Entry{LatestVersion: r.Version, URL: "s3://" + bucket + "/" + r.Key(), StatusCode: 200}
		for _, t := range etags {
			if t == r.MD5 {
				e.StatusCode = 304
			}
		}
		if e.StatusCode == 200 {
			send = append(send, r)
		}
		if a.Extend != nil {
			a.Extend(&e, r, base)
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
	return &Reply{Status: 200, Size: -1, Body: pr, Header: [][2]string{
		{"Cache-Control", "max-age=100"},
		{"Content-Type", "application/x-gzip"},
		{"Content-Encoding", "gzip"},
		{"Content-Disposition", `attachment; filename="ota-package.tar.gz" `},
	}}
}
