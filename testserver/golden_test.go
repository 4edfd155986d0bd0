package testserver

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
)

const goldenDir = "../testdata/reference-golden"

type goldenRecord struct {
	Request struct {
		Method  string      `json:"method"`
		Path    string      `json:"path"`
		Headers [][2]string `json:"headers"`
	} `json:"request"`
	Response struct {
		Status   int         `json:"status"`
		Headers  [][2]string `json:"headers"`
		BodyText *string     `json:"body_text"`
		BodyKind string      `json:"body_kind"`
		Members  []struct {
			Name     string  `json:"name"`
			Size     int64   `json:"size"`
			Mode     string  `json:"mode"`
			Mtime    int64   `json:"mtime"`
			UID      int     `json:"uid"`
			GID      int     `json:"gid"`
			MD5      string  `json:"md5"`
			JSONText *string `json:"json_text"`
		} `json:"tar_members_in_order"`
	} `json:"response"`
}

// startServer serves s on a real loopback listener (header case is recorded there).
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	return "http://" + l.Addr().String()
}

// rawGet sends exactly the request line and headers given, with no Accept-Encoding added.
func rawGet(t testing.TB, base, method, path string, hdrs [][2]string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, strings.TrimPrefix(base, "http://"))
	for _, h := range hdrs {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	io.WriteString(c, b.String())
	var rawResp bytes.Buffer
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, &rawResp)), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// http.ReadResponse trims header values; keep them as sent.
	head, _, _ := strings.Cut(rawResp.String(), "\r\n\r\n")
	resp.Header = http.Header{}
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, _ := strings.Cut(line, ":")
		resp.Header.Add(k, strings.TrimLeft(v, " "))
	}
	return resp, body
}

func loadGolden(t *testing.T, file string) []goldenRecord {
	f, err := os.Open(goldenDir + "/" + file)
	if err != nil {
		t.Fatalf("the reference vectors are part of the repository (testdata/reference-golden): %v", err)
	}
	defer f.Close()
	var out []goldenRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var g goldenRecord
		if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

// TestGoldenReplay replays every answer recorded from the unmodified reference application
// against the origin in reference-only mode: status, header values, body or tar members.
func TestGoldenReplay(t *testing.T) {
	for _, mode := range []struct{ origin, file string }{{OriginAppRunner, "apprunner.jsonl"}, {OriginLambda, "lambda.jsonl"}} {
		t.Run(mode.origin, func(t *testing.T) {
			recs := loadGolden(t, mode.file)
			cat, err := LoadCatalog(goldenDir)
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(cat, Options{Origin: mode.origin, NoEdge: true, ReferenceOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			base := startServer(t, s)
			for _, g := range recs {
				name := g.Request.Path
				if len(g.Request.Headers) > 0 {
					name += " INM=" + g.Request.Headers[0][1]
				}
				t.Run(name, func(t *testing.T) {
					resp, body := rawGet(t, base, g.Request.Method, g.Request.Path, g.Request.Headers)
					checkGolden(t, g, resp, body)
				})
			}
		})
	}
}

func checkGolden(t *testing.T, g goldenRecord, resp *http.Response, body []byte) {
	t.Helper()
	want := g.Response
	if resp.StatusCode != want.Status {
		t.Fatalf("status %d, want %d (body %.200q)", resp.StatusCode, want.Status, body)
	}
	got := map[string]string{}
	for k := range resp.Header {
		switch k {
		case "Date", "Server", "Content-Length", "Connection", "Transfer-Encoding": // framing: streamed vs built in RAM
			continue
		}
		got[k] = resp.Header.Get(k)
	}
	for _, h := range want.Headers {
		if got[http.CanonicalHeaderKey(h[0])] != h[1] {
			t.Errorf("header %s = %q, want %q", h[0], got[http.CanonicalHeaderKey(h[0])], h[1])
		}
		delete(got, http.CanonicalHeaderKey(h[0]))
	}
	if want.BodyKind == "" && len(got) > 0 {
		t.Errorf("extra headers %v", got)
	}
	switch {
	case want.BodyText != nil:
		if string(body) != *want.BodyText {
			t.Errorf("body %q, want %q", body, *want.BodyText)
		}
	case want.Members != nil:
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for i, m := range want.Members {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("member %d: %v", i, err)
			}
			data, _ := io.ReadAll(tr)
			sum := md5.Sum(data)
			if h.Name != m.Name || h.Size != m.Size || fmt.Sprintf("0o%o", h.Mode) != m.Mode || h.ModTime.Unix() != m.Mtime || h.Uid != m.UID || h.Gid != m.GID {
				t.Errorf("member %d: %s %d %o %d %d/%d, want %+v", i, h.Name, h.Size, h.Mode, h.ModTime.Unix(), h.Uid, h.Gid, m)
			}
			if m.JSONText != nil && string(data) != *m.JSONText {
				t.Errorf("%s:\n%s\nwant\n%s", m.Name, data, *m.JSONText)
			}
			if m.MD5 != "" && hex.EncodeToString(sum[:]) != m.MD5 {
				t.Errorf("%s md5 %x, want %s", m.Name, sum, m.MD5)
			}
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Errorf("more members than recorded: %v", err)
		}
	case want.BodyKind == "html":
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("content type %q, want html", resp.Header.Get("Content-Type"))
		}
	}
}
