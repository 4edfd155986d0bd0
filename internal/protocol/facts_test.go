package protocol

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
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
	c, err := config.Load(cfgFile, root, nil)
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
	if err := CheckRequestSize(u, ""); err == nil || !strings.Contains(err.Error(), "over the edge's 8192") {
		t.Fatalf("long URL: %v", err)
	}
	u, _ = url.Parse("http://127.0.0.1:1/package?cpuarch=armv8")
	if err := CheckRequestSize(u, strings.Repeat("0123456789abcdef0123456789abcdef,", 700)); err == nil || !strings.Contains(err.Error(), "If-None-Match") {
		t.Fatalf("long If-None-Match: %v", err)
	}
	if err := CheckRequestSize(u, strings.Repeat("0123456789abcdef0123456789abcdef,", 100)); err != nil {
		t.Fatalf("100 apps refused: %v", err)
	}
}

// A plan follows the device's own rules: a refused release or the bytes installed are held,
// an app the answer leaves out is removed only when unsigned removals are allowed.
func TestMakePlanRules(t *testing.T) {
	d := &packaging.Details{}
	d.Set("sb", packaging.Entry{LatestVersion: "2", StatusCode: 200, MD5: "refusedmd5"})
	d.Set("cam", packaging.Entry{LatestVersion: "1", StatusCode: 200, MD5: "cam1"})
	d.Set("os", packaging.Entry{LatestVersion: "9", StatusCode: 200, MD5: "os9"})
	installed := map[string]store.App{"sb": {Version: "1", MD5: "sb1"}, "cam": {Version: "1", MD5: "cam1"}, "modem": {Version: "1", MD5: "m1"}}
	rules := Rules{Refused: map[string]store.Refusal{"refusedmd5": {App: "sb"}}}
	p, err := MakePlan(d, installed, rules)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Download) != 1 || p.Download[0].App != "os" || strings.Join(p.Keep, ",") != "cam,sb" || strings.Join(p.Refused, ",") != "sb" || strings.Join(p.Unlisted, ",") != "modem" || len(p.Remove) != 0 {
		t.Fatalf("plan %+v", p)
	}
	rules.RemoveUnlisted = true
	if p, _ = MakePlan(d, installed, rules); strings.Join(p.Remove, ",") != "modem" || len(p.Unlisted) != 0 {
		t.Fatalf("unsigned removals allowed: %+v", p)
	}
	if _, err := MakePlan(&packaging.Details{Apps: []string{".x"}, Entries: map[string]packaging.Entry{".x": {StatusCode: 200}}}, nil, rules); err == nil {
		t.Fatal("a dot name was planned")
	}
}
