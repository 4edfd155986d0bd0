package agent

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/packaging"
)

// TestCanonicalQuery is protocol.md 3.1's example, byte for byte, from a configuration written
// in any case and order; probes decide under the sysroot.
func TestCanonicalQuery(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	os.WriteFile(filepath.Join(root, "dev", "video0"), nil, 0o644)
	cfgFile := filepath.Join(root, "c.yaml")
	os.WriteFile(cfgFile, []byte(`server:
  url: http://127.0.0.1:1/package
device:
  cpu_arch: ARMv8
  attributes: {Gamer: prod}
  probes: {camera: /dev/video*, modem: /dev/cdc-wdm*}
`), 0o644)
	c, err := LoadConfig(cfgFile, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.DeviceFacts()
	f := Facts(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Query("fullpayload"); got != "attrcamera=prod&attrgamer=prod&cpuarch=armv8&os=prod&payloadtype=fullpayload" {
		t.Fatalf("query %q", got)
	}
	if got := packaging.SortedMD5s([]string{"bb", "aa", "cc", "aa"}); got != "aa,bb,cc" {
		t.Fatalf("If-None-Match %q", got)
	}
}

func TestRequestSizeLimits(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1/package?" + strings.Repeat("a", 9000))
	if err := checkRequestSize(u, ""); err == nil || !strings.Contains(err.Error(), "over the edge's 8192") {
		t.Fatalf("long URL: %v", err)
	}
	u, _ = url.Parse("http://127.0.0.1:1/package?cpuarch=armv8")
	if err := checkRequestSize(u, strings.Repeat("0123456789abcdef0123456789abcdef,", 700)); err == nil || !strings.Contains(err.Error(), "If-None-Match") {
		t.Fatalf("long If-None-Match: %v", err)
	}
	if err := checkRequestSize(u, strings.Repeat("0123456789abcdef0123456789abcdef,", 100)); err != nil {
		t.Fatalf("100 apps refused: %v", err)
	}
}
