package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestSampleIsDeterministicAndSigned(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	for _, d := range []string{"a", "b"} {
		if err := run(context.Background(), []string{"sample", "--out", filepath.Join(dir, d), "--size", "1000", "--seed", "4"}, &out); err != nil {
			t.Fatal(err)
		}
	}
	x, _ := os.ReadFile(filepath.Join(dir, "a/blobs/os_armv8_1.1.0"))
	y, _ := os.ReadFile(filepath.Join(dir, "b/blobs/os_armv8_1.1.0"))
	if len(x) != 1000 || !bytes.Equal(x, y) {
		t.Fatal("the same seed wrote different bytes")
	}
	var cat struct {
		Rows []map[string]any `json:"rows"`
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "a/catalog.json"))
	json.Unmarshal(raw, &cat)
	if len(cat.Rows) != 9 {
		t.Fatalf("%d rows, want the nine of protocol.md 1.1", len(cat.Rows))
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve", "--listen", "0.0.0.0:0", "--catalog", t.TempDir()}, &out)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("non-loopback listen: %v", err)
	}
	if err := run(context.Background(), []string{"serve"}, &out); err == nil || !strings.Contains(err.Error(), "--catalog") {
		t.Fatalf("missing --catalog: %v", err)
	}
	if err := run(context.Background(), []string{"bogus"}, &out); err == nil {
		t.Fatal("unknown command accepted")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServeTLS: --tls with --tls-dir writes ca.pem and serves HTTPS with it.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"sample", "--out", filepath.Join(dir, "cat"), "--size", "100"}, &out); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var so syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--catalog", filepath.Join(dir, "cat"), "--tls", "--tls-dir", filepath.Join(dir, "tls")}, &so)
	}()
	var base string
	for i := 0; i < 100 && base == ""; i++ {
		time.Sleep(20 * time.Millisecond)
		for _, l := range strings.Split(so.String(), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "endpoint" {
				base = strings.TrimSuffix(f[1], "/package")
			}
		}
	}
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("no https endpoint printed: %q", so.String())
	}
	ca, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Hello World" {
		t.Fatalf("GET / over TLS: %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Every --help exits 0 with a usage line and every flag; an unknown flag is a usage error.
func TestHelp(t *testing.T) {
	for _, cmd := range []string{"sample", "serve"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{cmd, "--help"}, &out); err != nil {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		for _, want := range []string{"usage: ota-testserver " + cmd, "--help", "flags:"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("%s --help lacks %q:\n%s", cmd, want, out.String())
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--flip"}, &out); !errors.Is(err, errUsage) {
		t.Fatalf("unknown flag: %v", err)
	}
}

// SIGHUP re-reads the catalog and flushes the edge: the next request sees the new row, not
// the answer cached before.
func TestReloadFlushesEdge(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	catDir := filepath.Join(dir, "cat")
	if err := run(context.Background(), []string{"sample", "--out", catDir, "--size", "100"}, &out); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var so syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--catalog", catDir}, &so) }()
	var base string
	for i := 0; i < 100 && base == ""; i++ {
		time.Sleep(20 * time.Millisecond)
		for _, l := range strings.Split(so.String(), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "endpoint" {
				base = f[1]
			}
		}
	}
	get := func() string {
		resp, err := http.Get(base + "?cpuarch=armv8&os=prod&payloadtype=metadataonly")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if !strings.Contains(get(), `"1.1.0"`) {
		t.Fatal("the sample's os_armv8 prod row is not 1.1.0")
	}
	raw, _ := os.ReadFile(filepath.Join(catDir, "catalog.json"))
	os.WriteFile(filepath.Join(catDir, "catalog.json"), bytes.Replace(raw, []byte(`"version": "1.1.0"`), []byte(`"version": "1.1.1"`), 1), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for i := 0; ; i++ {
		if strings.Contains(get(), `"1.1.1"`) {
			break
		}
		if i == 100 {
			t.Fatal("after SIGHUP the edge still serves the old answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
