package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

type member struct {
	name, body, link string
	typ              byte
	pax              map[string]string
}

// tgz builds a gzip'd tar by hand, for payloads a PayloadWriter would never make.
func tgz(members ...member) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: m.typ, Linkname: m.link, PAXRecords: m.pax}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if m.pax != nil {
			h.Format = tar.FormatPAX
		}
		tw.WriteHeader(h)
		tw.Write([]byte(m.body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func details(entries ...string) string {
	d := &packaging.Details{}
	for _, e := range entries {
		app, ver, _ := strings.Cut(e, " ")
		d.Set(app, packaging.Entry{LatestVersion: ver, URL: "s3://b/" + app + "_" + ver, StatusCode: 200})
	}
	return string(d.Marshal())
}

// reply is a canned endpoint answer.
type reply struct {
	status int
	header map[string]string
	body   []byte
	stall  bool // send the body, then hang
}

func hostileServer(t *testing.T, r reply) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for k, v := range r.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(r.status)
		w.Write(r.body)
		if r.stall {
			w.(http.Flusher).Flush()
			<-req.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

var gz = map[string]string{"Content-Type": "application/x-gzip", "Content-Encoding": "gzip"}

// TestBadInput: every hostile or broken answer is a clear error of the right class, with the
// active slot byte-identical and the database unchanged.
func TestBadInput(t *testing.T) {
	sb := "scoreboard_9.9.9"
	good := details("scoreboard 9.9.9")
	cases := []struct {
		name   string
		reply  *reply              // hostile endpoint (nil: the real testserver)
		faults *testserver.Faults  // on the real testserver
		setup  func(e *env) string // extra config; may change the catalog
		want   error               // class
		msg    string              // in the error
	}{
		{name: "HTML 500", reply: &reply{status: 500, header: map[string]string{"Content-Type": "text/html"}, body: []byte("<html>oops</html>")}, want: ErrUnavailable, msg: "HTML error page"},
		{name: "503 with Retry-After", reply: &reply{status: 503, header: map[string]string{"Retry-After": "120"}}, want: ErrUnavailable, msg: "503"},
		{name: "429 too many requests", reply: &reply{status: 429}, want: ErrUnavailable, msg: "429"},
		{name: "404 nothing released", reply: &reply{status: 404, body: []byte(`{"error": "No deployment package found"}`)}, msg: "check device.cpu_arch"},
		{name: "400 refused facts", reply: &reply{status: 400, body: []byte(`{"error": "Missing cpuArch query param"}`)}, msg: "Missing cpuArch"},
		{name: "redirect to another host", reply: &reply{status: 302, header: map[string]string{"Location": "http://127.0.0.2:9/evil"}}, want: ErrUnavailable, msg: "refusing redirect"},
		{name: "download URL not https (file:)", reply: &reply{status: 200, header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"scoreboard": {"latestVersion": "9", "url": "s3://nobucket/scoreboard_9", "status_code": 200, "download": "file:///etc/shadow"}}`)}, setup: func(*env) string { return "server:\n  url: URL\n  payload: metadata\n" }, want: ErrConfig, msg: "server.firmware maps only"},
		{name: "418 unexpected status", reply: &reply{status: 418}, msg: "418"},
		{name: "captive portal", reply: &reply{status: 200, header: map[string]string{"Content-Type": "text/html; charset=utf-8"}, body: []byte("<html>please log in</html>")}, want: ErrUnavailable, msg: "answered text/html"},
		{name: "not gzip", reply: &reply{status: 200, header: gz, body: []byte("<html>captive portal</html>")}, want: ErrRejected, msg: "1f 8b"},
		{name: "path traversal", reply: &reply{status: 200, header: gz, body: tgz(member{name: "../../etc/passwd", body: "x"}, member{name: "package_details.json", body: good})}, want: ErrRejected, msg: "path separator"},
		{name: "absolute path", reply: &reply{status: 200, header: gz, body: tgz(member{name: "/etc/passwd", body: "x"})}, want: ErrRejected, msg: "path separator"},
		{name: "symlink", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, typ: tar.TypeSymlink, link: "/etc/shadow"})}, want: ErrRejected, msg: "not a regular file"},
		{name: "hard link", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, typ: tar.TypeLink, link: "current/os_armv8"})}, want: ErrRejected, msg: "not a regular file"},
		{name: "device node", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, typ: tar.TypeChar})}, want: ErrRejected, msg: "not a regular file"},
		{name: "duplicate member", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, body: "a"}, member{name: sb, body: "b"}, member{name: "package_details.json", body: good})}, want: ErrRejected, msg: "twice"},
		{name: "xattr capability", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, body: "a", pax: map[string]string{"SCHILY.xattr.security.capability": "x"}})}, want: ErrRejected, msg: "PAX record"},
		{name: "missing package_details.json", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, body: "a"})}, want: ErrRejected, msg: "without package_details.json"},
		{name: "bad package_details.json", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, body: "a"}, member{name: "package_details.json", body: "{nope"})}, want: ErrRejected, msg: "bad package details"},
		{name: "details lists a missing member", reply: &reply{status: 200, header: gz, body: tgz(member{name: "package_details.json", body: good})}, want: ErrRejected, msg: "has no member"},
		{name: "extra member", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, body: "a"}, member{name: "evil_1", body: "b"}, member{name: "package_details.json", body: good})}, want: ErrRejected, msg: "not listed"},
		{name: "trailing garbage", reply: &reply{status: 200, header: gz, body: append(tgz(member{name: sb, body: "a"}, member{name: "package_details.json", body: good}), "garbage"...)}, want: ErrRejected, msg: "trailing data"},
		{name: "unsigned member", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, body: "a"}, member{name: "package_details.json", body: good})}, want: ErrRejected, msg: "no published statement"},
		{name: "metadata app name traversal", reply: &reply{status: 200, header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"../x": {"latestVersion": "1", "url": "s3://b/x", "status_code": 200}}`)}, setup: func(*env) string { return "server:\n  url: URL\n  payload: metadata\n" }, want: ErrRejected, msg: "path separator"},
		{name: "metadata odd status_code", reply: &reply{status: 200, header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"x": {"latestVersion": "1", "url": "s3://b/x", "status_code": 500}}`)}, setup: func(*env) string { return "server:\n  url: URL\n  payload: metadata\n" }, want: ErrRejected, msg: "status_code 500"},
		{name: "metadata endless JSON", reply: &reply{status: 200, header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"x": "` + strings.Repeat("a", 2<<20) + `"}`)}, setup: func(*env) string { return "server:\n  url: URL\n  payload: metadata\n" }, want: ErrRejected, msg: "larger than"},
		{name: "stalled transfer", reply: &reply{status: 200, header: gz, body: tgz(member{name: sb, body: strings.Repeat("a", 100000)})[:200], stall: true}, want: ErrUnavailable, msg: "stalled"},
		{name: "connection cut", faults: &testserver.Faults{CloseAfter: 3000}, setup: newRelease, want: ErrUnavailable, msg: "receiving the payload"},
		{name: "wrong Content-Length", faults: &testserver.Faults{ExtraLength: 100, PathPrefix: "/firmware/"}, setup: func(e *env) string { newRelease(e); return metadataMode(e) }, want: ErrUnavailable, msg: "download"},
		{name: "flipped byte in a binary", faults: &testserver.Faults{Flip: true, FlipAt: 10, PathPrefix: "/firmware/"}, setup: func(e *env) string { newRelease(e); return metadataMode(e) }, want: ErrRejected, msg: "sha256 mismatch"},
		{name: "signed by an unknown key", setup: func(e *env) string {
			r := e.release("scoreboard", "prod", "6.6.6", []byte("evil"), 50)
			priv, _, _ := packaging.GenerateKey()
			r, _ = e.cat.SignRow(r, priv)
			e.srv.SetRow(r)
			e.srv.FlushEdge()
			return ""
		}, want: ErrRejected, msg: "not trusted"},
		{name: "signature of another release", setup: func(e *env) string {
			r := e.release("scoreboard", "prod", "1.2.0", []byte("scoreboard 1.2.0"), 20)
			other := e.row("modemFW", "prod")
			r.Sig = other.Sig
			e.srv.SetRow(r)
			e.srv.FlushEdge()
			return ""
		}, want: ErrRejected, msg: "signature does not verify"},
		{name: "corrupted full payload", setup: newRelease, faults: &testserver.Faults{Flip: true, FlipAt: 600}, want: ErrRejected, msg: "bad payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, testserver.Options{})
			cfg := e.config("")
			if _, err := e.check(cfg); err != nil {
				t.Fatal(err)
			}
			snap := takeSnapshot(t, cfg.StateDir)
			extra := ""
			if c.setup != nil {
				extra = c.setup(e)
			}
			if c.reply != nil {
				url := hostileServer(t, *c.reply) + "/package"
				if extra == "" {
					extra = "server:\n  url: URL\n"
				}
				extra = strings.Replace(extra, "URL", url, 1)
			}
			if c.faults != nil {
				e.srv.SetFaults(*c.faults)
			}
			t.Setenv("OTA_AGENT_SERVER_STALL_TIMEOUT", "300ms") // a stalled body ends quickly
			a := e.agent(e.config(extra))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := a.Check(ctx, CheckOptions{})
			if err == nil || res.Result != ResultFailed {
				t.Fatalf("accepted: %+v", res)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error class: %v, want %v", err, c.want)
			}
			if c.want == nil && (errors.Is(err, ErrRejected) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrConfig)) {
				t.Fatalf("error %v should be a plain failure", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not say %q", err, c.msg)
			}
			if d := snap.equal(takeSnapshot(t, cfg.StateDir)); d != "" {
				t.Fatal(d)
			}
			verifyState(t, a)
		})
	}
}

func newRelease(e *env) string {
	data := make([]byte, 20000)
	rand.NewChaCha8([32]byte{1}).Read(data)
	e.release("scoreboard", "prod", "1.3.0", data, 30)
	return ""
}

func metadataMode(e *env) string {
	return "server:\n  url: " + e.base + "/package\n  payload: metadata\n  firmware: {" + e.cat.Bucket + ": " + e.base + "/firmware/}\n"
}

// TestStallTimeoutConfigured: server.stall_timeout ends a stalled body (the default, 45 s,
// would outlast this test's 20 s deadline).
func TestStallTimeoutConfigured(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	body := tgz(member{name: "scoreboard_9.9.9", body: strings.Repeat("a", 100000)})[:200]
	url := hostileServer(t, reply{status: 200, header: gz, body: body, stall: true}) + "/package"
	cfg := e.config("server:\n  url: " + url + "\n  stall_timeout: 300ms\n")
	if cfg.Server.StallTimeout != 300*time.Millisecond {
		t.Fatalf("stall_timeout = %v", cfg.Server.StallTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := e.agent(cfg).Check(ctx, CheckOptions{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("check = %v, want a stalled transfer", err)
	}
}

// TestCaptivePortalOnTheCDN: a firmware download answered with a web page is the network's
// doing (exit 3), not a release to reject or count.
func TestCaptivePortalOnTheCDN(t *testing.T) {
	e := newEnv(t, testserver.Options{ReferenceOnly: true})
	portal := hostileServer(t, reply{status: 200, header: map[string]string{"Content-Type": "text/html"}, body: []byte("<html>log in</html>")})
	cfg := e.config("server:\n  url: " + e.base + "/package\n  payload: metadata\n  firmware: {" + e.cat.Bucket + ": " + portal + "/}\n")
	_, err := e.check(cfg)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "answered text/html") {
		t.Fatalf("a portal page for a binary: %v", err)
	}
}
