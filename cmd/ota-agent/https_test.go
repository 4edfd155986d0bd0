package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
)

// TestHTTPSProxyFromEnvironment: under systemd, proxies come from HTTPS_PROXY / NO_PROXY in
// the unit's environment. The endpoint has a real host name that only the proxy resolves.
func TestHTTPSProxyFromEnvironment(t *testing.T) {
	tlsDir := t.TempDir()
	_, cert, err := testserver.GenerateTLS(tlsDir, []string{"127.0.0.1", "ota.test"})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldWith(t, 4096, "", testserver.Options{TLS: &testserver.TLSOptions{Cert: cert}})
	addr := strings.TrimPrefix(w.base, "https://")
	_, port, _ := net.SplitHostPort(addr)
	proxy, err := testserver.NewConnectProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg := "server:\n  url: https://ota.test:" + port + "/package\n  ca_file: " + filepath.Join(tlsDir, "ca.pem") +
		"\ndevice:\n  cpu_arch: armv8\nstate_dir: " + w.state + "\ntrust:\n  keys: [" + w.tw.PubPath + "]\n"
	os.WriteFile(w.cfg, []byte(cfg), 0o644)
	if r := w.agent([]string{"HTTPS_PROXY=" + proxy.URL()}, "check", "--once"); r.code != 0 {
		t.Fatalf("through HTTPS_PROXY: exit %d %s", r.code, r.stderr)
	}
	if proxy.Connects.Load() == 0 {
		t.Fatal("HTTPS_PROXY not used")
	}
	proxy.Refuse.Store(true)
	if r := w.agent([]string{"HTTPS_PROXY=" + proxy.URL()}, "check", "--once"); r.code != 3 || !strings.Contains(r.stderr, "proxy") {
		t.Fatalf("refusing proxy: exit %d %s", r.code, r.stderr)
	}
	// The wrong CA: exit 4 with the cause.
	other := t.TempDir()
	testserver.GenerateTLS(other, []string{"127.0.0.1"})
	os.WriteFile(w.cfg, []byte(strings.Replace(cfg, filepath.Join(tlsDir, "ca.pem"), filepath.Join(other, "ca.pem"), 1)), 0o644)
	proxy.Refuse.Store(false)
	if r := w.agent([]string{"HTTPS_PROXY=" + proxy.URL()}, "check", "--once"); r.code != 4 || !strings.Contains(r.stderr, "unknown CA") {
		t.Fatalf("wrong CA: exit %d %s", r.code, r.stderr)
	}
}
