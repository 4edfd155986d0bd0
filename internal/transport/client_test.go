package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/internal/fault"
)

func client(t *testing.T, o ClientOptions) *http.Client {
	t.Helper()
	c, err := NewHTTPClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func get(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Every request names the agent (a request that sets its own keeps it); nothing is
// decompressed behind the caller's back.
func TestUserAgentAndNoTransparentGzip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		fmt.Fprint(w, r.UserAgent(), "|", r.Header.Get("Accept-Encoding"))
	}))
	defer srv.Close()
	for _, c := range []struct{ ua, want string }{{"ota-agent/1.2.3", "ota-agent/1.2.3|"}, {"", "ota-agent|"}} {
		body, err := get(client(t, ClientOptions{UserAgent: c.ua}), srv.URL)
		if err != nil || body != c.want {
			t.Errorf("UserAgent %q: %q %v, want %q", c.ua, body, err, c.want)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("User-Agent", "grab")
	resp, err := client(t, ClientOptions{UserAgent: "ota-agent/1"}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "grab|" {
		t.Errorf("a request's own User-Agent: %q", b)
	}
}

// Redirects: https only (plain http to loopback only when LoopbackHTTP), to the same host or
// one named in RedirectHosts, at most three.
func TestRedirectPolicy(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "other") }))
	defer other.Close()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, srv.URL+"/ok", http.StatusFound)
		case "/other":
			http.Redirect(w, r, other.URL+"/", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, srv.URL+"/loop", http.StatusFound)
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	defer srv.Close()
	otherHost := strings.TrimPrefix(other.URL, "http://")
	for _, c := range []struct {
		name string
		o    ClientOptions
		path string
		want string // body, or the error's text
	}{
		{"plain http refused", ClientOptions{}, "/same", "not https"},
		{"loopback http in tests", ClientOptions{LoopbackHTTP: true}, "/same", "ok"},
		{"another host refused", ClientOptions{LoopbackHTTP: true}, "/other", "not the server's or a firmware CDN's host"},
		{"a firmware host", ClientOptions{LoopbackHTTP: true, RedirectHosts: []string{otherHost}}, "/other", "other"},
		{"a loop", ClientOptions{LoopbackHTTP: true}, "/loop", "more than 3 redirects"},
	} {
		body, err := get(client(t, c.o), srv.URL+c.path)
		got := body
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) || (err == nil) != (c.want == "ok" || c.want == "other") {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// A body that stops moving ends with ErrStalled (the stall timer), not a hang.
func TestStalledBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	_, err := get(client(t, ClientOptions{StallTimeout: 200e6}), srv.URL)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("read = %v, want ErrStalled", err)
	}
}

// FetchSmall: a document, the same one (304), one not published (404, or 403 from S3
// without list permission), one too large, and other answers named.
func TestFetchSmall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/doc" && r.Header.Get("If-None-Match") == `"v1"`:
			w.WriteHeader(http.StatusNotModified)
		case r.URL.Path == "/doc":
			w.Header().Set("ETag", `"v1"`)
			fmt.Fprint(w, "keys")
		case r.URL.Path == "/big":
			fmt.Fprint(w, strings.Repeat("x", 100))
		case r.URL.Path == "/denied":
			w.WriteHeader(http.StatusForbidden)
		case r.URL.Path == "/broken":
			w.WriteHeader(http.StatusBadGateway)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, ctx := client(t, ClientOptions{}), context.Background()
	if body, etag, same, err := FetchSmall(ctx, c, srv.URL+"/doc", "", 64); string(body) != "keys" || etag != `"v1"` || same || err != nil {
		t.Errorf("document: %q %q %v %v", body, etag, same, err)
	}
	if _, etag, same, err := FetchSmall(ctx, c, srv.URL+"/doc", `"v1"`, 64); !same || etag != `"v1"` || err != nil {
		t.Errorf("same document: %q %v %v", etag, same, err)
	}
	for _, p := range []string{"/gone", "/denied"} {
		if _, _, _, err := FetchSmall(ctx, c, srv.URL+p, "", 64); !errors.Is(err, ErrNotPublished) {
			t.Errorf("%s: %v, want ErrNotPublished", p, err)
		}
	}
	if _, _, _, err := FetchSmall(ctx, c, srv.URL+"/big", "", 64); err == nil || !strings.Contains(err.Error(), "larger than 64 bytes") {
		t.Errorf("too large: %v", err)
	}
	if _, _, _, err := FetchSmall(ctx, c, srv.URL+"/broken", "", 64); err == nil || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Errorf("502: %v", err)
	}
}

// Transport failures become causes a person can act on: a CA the device does not trust
// (rejected: set server.ca_file), a proxy that is not there (unavailable).
func TestErrorsNameTheCause(t *testing.T) {
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the client refuses
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	_, err := get(client(t, ClientOptions{}), tlsSrv.URL)
	if !errors.Is(err, fault.ErrRejected) || !strings.Contains(err.Error(), "set server.ca_file") {
		t.Errorf("unknown CA: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	_, err = get(client(t, ClientOptions{Proxy: dead}), "http://ota.example/package")
	if !errors.Is(err, fault.ErrUnavailable) || !strings.Contains(err.Error(), "proxy "+dead+" unreachable") {
		t.Errorf("dead proxy: %v", err)
	}
	if _, err := NewHTTPClient(ClientOptions{Proxy: "socks5://x"}); !errors.Is(err, fault.ErrConfig) || !strings.Contains(err.Error(), "server.proxy") {
		t.Errorf("bad proxy URL: %v", err)
	}
}
