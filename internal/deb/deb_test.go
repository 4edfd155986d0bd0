package deb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
)

func samplePackage() *Package {
	return &Package{
		Control: "Package: sample\nVersion: 1.0+2.gabc\nArchitecture: amd64\nMaintainer: x <x@example.invalid>\nDescription: a sample\n more\n",
		Files: []File{
			{Path: "/usr/bin/sample", Mode: 0o755, Data: []byte("#!/bin/sh\necho sample\n")},
			{Path: "/etc/sample/config.yaml", Mode: 0o640, Data: []byte("a: 1\n")},
			{Path: "/usr/share/doc/sample/link", Link: "../../../bin/sample"},
		},
		Scripts: map[string][]byte{"postinst": []byte("#!/bin/sh\nexit 0\n")},
		Conf:    []string{"/etc/sample/config.yaml"},
		Time:    time.Unix(1796400000, 0),
	}
}

// The same package gives the same bytes, and dpkg-deb reads it: control, conffiles,
// md5sums, modes, owners.
func TestPackageReproducibleAndReadable(t *testing.T) {
	var a, b bytes.Buffer
	if err := samplePackage().Write(&a); err != nil {
		t.Fatal(err)
	}
	p := samplePackage()
	slices.Reverse(p.Files) // the order given does not matter
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the same package gave other bytes")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("SKIPPED the dpkg-deb half: dpkg-deb is not installed (apt-get install dpkg)")
	}
	path := filepath.Join(t.TempDir(), "sample.deb")
	os.WriteFile(path, a.Bytes(), 0o644)
	info, err := exec.Command("dpkg-deb", "--info", path).CombinedOutput()
	if err != nil || !strings.Contains(string(info), "Installed-Size: 10") || !strings.Contains(string(info), "conffiles") {
		t.Fatalf("dpkg-deb --info: %v\n%s", err, info)
	}
	contents := exec.Command("dpkg-deb", "--contents", path)
	contents.Env = append(os.Environ(), "TZ=UTC")
	list, err := contents.CombinedOutput()
	for _, want := range []string{"-rwxr-xr-x root/root        22 2026-12-04 16:00 ./usr/bin/sample", "-rw-r----- root/root         5 2026-12-04 16:00 ./etc/sample/config.yaml", "./usr/share/doc/sample/link -> ../../../bin/sample"} {
		if err != nil || !strings.Contains(string(list), want) {
			t.Fatalf("dpkg-deb --contents lacks %q: %v\n%s", want, err, list)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", path, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v %s", err, out)
	}
	sums, _ := os.ReadFile(filepath.Join(dir, "md5sums"))
	conf, _ := os.ReadFile(filepath.Join(dir, "conffiles"))
	if !strings.Contains(string(sums), "  usr/bin/sample\n") || string(conf) != "/etc/sample/config.yaml\n" {
		t.Fatalf("md5sums %q, conffiles %q", sums, conf)
	}
}

func TestPackageRefusesBadInput(t *testing.T) {
	for name, mod := range map[string]func(*Package){
		"relative path":    func(p *Package) { p.Files[0].Path = "usr/bin/x" },
		"twice":            func(p *Package) { p.Files[1].Path = p.Files[0].Path },
		"missing conffile": func(p *Package) { p.Conf = []string{"/etc/none"} },
		"installed-size":   func(p *Package) { p.Control += "Installed-Size: 1\n" },
	} {
		p := samplePackage()
		mod(p)
		if err := p.Write(&bytes.Buffer{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, v := range []string{"dev", "", "1.0 beta", "v1.2"} {
		if ValidVersion(v) == nil {
			t.Errorf("version %q accepted", v)
		}
	}
	for _, v := range []string{"0.0+204.g64faaec+dirty", "1.2.0", "1:2.0-3", "1.2.0+3.gabc"} {
		if err := ValidVersion(v); err != nil {
			t.Error(err)
		}
	}
}

// hostTools builds the three programs for this machine into a directory.
func hostTools(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	ld := "-X main.version=" + version + " -X github.com/ota-agent/ota-agent/agent.Version=" + version
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-ldflags", ld, "-o", dir+"/", "./cmd/ota-agent", "./cmd/ota-release", "./cmd/ota-testserver")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// The man pages and the completion say every command and flag the programs' --help says,
// and ota-agent.yaml(5) every configuration key; the completion completes them in bash.
func TestManualCoversEveryFlagAndKey(t *testing.T) {
	bin := hostTools(t, "1.0")
	when := time.Unix(1796400000, 0)
	for _, name := range []string{"ota-agent", "ota-release", "ota-testserver"} {
		c, err := HelpOf(filepath.Join(bin, name), name)
		if err != nil {
			t.Fatal(err)
		}
		man, comp := c.Man("1", "User Commands", "1.0", when, ""), c.Completion()
		min := map[string]int{"ota-agent": 10, "ota-release": 8, "ota-testserver": 2}[name]
		if len(c.Subs) < min {
			t.Fatalf("%s: %d commands read from its help (%v), want at least %d", name, len(c.Subs), c.Subs, min)
		}
		for _, sub := range c.Subs {
			help := c.SubHelp[sub]
			flags := flagsOf(help)
			if len(flags) == 0 || !strings.Contains(help, "usage: "+name+" "+strings.Fields(sub)[0]) {
				t.Fatalf("%s %s --help: flags %v\n%s", name, sub, flags, help)
			}
			if !strings.Contains(man, ".SS "+sub+"\n") {
				t.Errorf("%s man page lacks the command %q", name, sub)
			}
			for _, f := range flags {
				if !strings.Contains(man, strings.ReplaceAll(f, "-", `\-`)) {
					t.Errorf("%s man page lacks %s %s", name, sub, f)
				}
				if !strings.Contains(comp, f) {
					t.Errorf("%s completion lacks %s %s", name, sub, f)
				}
			}
		}
		complete(t, name, comp)
	}
	readme, _ := os.ReadFile("../../README.md")
	example, _ := os.ReadFile("../../dist/config.yaml")
	cm := ConfigMan("1.0", when, string(readme), string(example))
	for _, k := range config.Keys() {
		if !strings.Contains(cm, ".B "+k.Key+"\n") {
			t.Errorf("ota-agent.yaml(5) lacks the key %s", k.Key)
		}
	}
	if !strings.Contains(cm, ".B server.stall_timeout\n(default 45s) ") || !strings.Contains(cm, "(default \"\") PEM CA bundle") {
		t.Errorf("ota-agent.yaml(5) lacks defaults or meanings")
	}
	manWarnings(t, cm)
}

// complete runs the completion in bash for a few command lines.
func complete(t *testing.T, name, script string) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		return
	}
	cases := map[string][][2]string{
		"ota-agent":      {{"ota-agent --config /etc/x.yaml ch", "check"}, {"ota-agent check --dr", "--dry-run"}, {"ota-agent --ro", "--root"}},
		"ota-release":    {{"ota-release pub", "publish"}, {"ota-release publish --pr", "--prune"}, {"ota-release keys rot", "rotate"}, {"ota-release keys rotate --thr", "--threshold"}},
		"ota-testserver": {{"ota-testserver serve --aws-b", "--aws-bucket"}},
	}[name]
	for _, c := range cases {
		line := strings.Fields(c[0])
		if strings.HasSuffix(c[0], " ") {
			line = append(line, "")
		}
		fn := "_" + strings.ReplaceAll(name, "-", "_")
		sh := script + "\nCOMP_WORDS=(" + strings.Join(line, " ") + ")\nCOMP_CWORD=" + strings.TrimSpace(string(rune('0'+len(line)-1))) + "\n" + fn + "\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command("bash", "-c", sh).CombinedOutput()
		if err != nil || !slices.Contains(strings.Fields(string(out)), c[1]) {
			t.Errorf("%s: completing %q gave %q, want %s (%v)", name, c[0], out, c[1], err)
		}
	}
}

// manWarnings renders a man page with man --warnings: no complaint.
func manWarnings(t *testing.T, page string) {
	t.Helper()
	if _, err := exec.LookPath("man"); err != nil {
		return
	}
	path := filepath.Join(t.TempDir(), "page.5")
	os.WriteFile(path, []byte(page), 0o644)
	cmd := exec.Command("man", "--warnings", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("man --warnings: %v\n%s", err, stderr.String())
	}
}
