package deb

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs a command in dir, failing the test with its output.
func runIn(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC") // dpkg-deb prints times in local time
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// `make deb` twice gives the same bytes; lintian finds no error and no warning in any of
// them (the overrides say why, in dist/debian/*.lintian-overrides).
func TestMakeDebReproducibleAndLintianClean(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short: make deb cross-builds every architecture")
	}
	out := [2]string{t.TempDir(), t.TempDir()}
	for _, o := range out {
		runIn(t, "../..", "make", "-s", "deb", "DEB_OUT="+o)
	}
	debs, _ := filepath.Glob(filepath.Join(out[0], "*.deb"))
	if len(debs) != 6 {
		t.Fatalf("make deb wrote %v, want ota-agent and ota-agent-tools for armhf, arm64 and amd64", debs)
	}
	for _, a := range debs {
		x, _ := os.ReadFile(a)
		y, err := os.ReadFile(filepath.Join(out[1], filepath.Base(a)))
		if err != nil || !bytes.Equal(x, y) {
			t.Fatalf("%s: a second make deb gave other bytes (%v)", filepath.Base(a), err)
		}
	}
	t.Logf("make deb: %d packages, byte-identical twice", len(debs))
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Skip("SKIPPED lintian: not installed (apt-get install lintian; .ci/run does)")
	}
	cmd := exec.Command("lintian", append([]string{"--tag-display-limit", "0"}, debs...)...)
	report, _ := cmd.CombinedOutput() // its status counts overridden tags too
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(report))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("lintian:\n%s", strings.Join(bad, "\n"))
	}
}

// The amd64 package in a fresh Debian root (mmdebstrap, dpkg --root): the unit is enabled,
// the state directory has the modes StrictModes expects, the agent runs; an upgrade from the
// previous package keeps a locally edited conffile and the state; remove keeps both, purge
// removes them.
func TestDebInstallUpgradePurge(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short: it builds a Debian root")
	}
	for _, tool := range []string{"mmdebstrap", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: %s is not installed (apt-get install mmdebstrap dpkg)", tool)
		}
	}
	if os.Getuid() != 0 {
		t.Skip("SKIPPED: needs root (mmdebstrap and dpkg --root into a fresh root)")
	}
	root := filepath.Join(t.TempDir(), "root")
	// merged /usr by mmdebstrap's hook rather than usrmerge (which pulls in perl), nothing
	// fsync'd while the root is built: the root is a scratch directory.
	hooks := []string{}
	if _, err := os.Stat("/usr/share/mmdebstrap/hooks/merged-usr"); err == nil {
		hooks = append(hooks, "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr")
	}
	runIn(t, ".", "mmdebstrap", append(hooks, "--variant=minbase", "--include=init-system-helpers", "--quiet", "--dpkgopt=force-unsafe-io",
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
		"bookworm", root, hostMirror(t))...)
	previous, current := buildAmd64(t, "0.0~previous"), buildAmd64(t, "0.0+1.gcurrent")
	dpkg := func(args ...string) string {
		return runIn(t, ".", "dpkg", append([]string{"--root=" + root}, args...)...)
	}
	chroot := func(args ...string) string { return runIn(t, ".", "chroot", append([]string{root}, args...)...) }

	dpkg("-i", previous)
	link, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ota-agent.service"))
	if err != nil || link != "/lib/systemd/system/ota-agent.service" {
		t.Fatalf("the unit is not enabled: %q %v", link, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "var/lib/ota-agent")); err != nil || fi.Mode().Perm() != 0o755 || !fi.IsDir() {
		t.Fatalf("state directory: %v %v", fi, err)
	}
	if v := chroot("/usr/bin/ota-agent", "version"); !strings.Contains(v, "0.0~previous") {
		t.Fatalf("version %q", v)
	}
	// The agent's StrictModes accept what the package installed (status needs no server).
	chroot("/usr/bin/ota-agent", "status")

	conf := filepath.Join(root, "etc/ota-agent/config.yaml")
	edited := append(must(os.ReadFile(conf)), []byte("# a local edit\n")...)
	os.WriteFile(conf, edited, 0o640)
	os.WriteFile(filepath.Join(root, "var/lib/ota-agent/marker"), []byte("state"), 0o600)

	dpkg("-i", current)
	if v := chroot("/usr/bin/ota-agent", "version"); !strings.Contains(v, "0.0+1.gcurrent") {
		t.Fatalf("after the upgrade: version %q", v)
	}
	if got := must(os.ReadFile(conf)); !bytes.Equal(got, edited) {
		t.Fatalf("the upgrade lost the local edit of the conffile:\n%s", got)
	}
	if m, _ := filepath.Glob(conf + ".dpkg-*"); len(m) > 0 {
		t.Fatalf("the upgrade left %v", m)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/ota-agent/marker")); err != nil {
		t.Fatalf("the upgrade lost the state directory's files: %v", err)
	}
	chroot("/usr/bin/ota-agent", "status")

	dpkg("-r", "ota-agent")
	for _, p := range []string{"etc/ota-agent/config.yaml", "var/lib/ota-agent/marker"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Fatalf("remove removed %s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/ota-agent")); err == nil {
		t.Fatal("remove kept the binary")
	}
	dpkg("-P", "ota-agent")
	for _, p := range []string{"etc/ota-agent", "var/lib/ota-agent", "etc/systemd/system/multi-user.target.wants/ota-agent.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Fatalf("purge left %s", p)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// buildAmd64 is the ota-agent package for amd64 at version (this machine's programs).
func buildAmd64(t *testing.T, version string) string {
	t.Helper()
	bin := hostTools(t, version)
	out := t.TempDir()
	runIn(t, "../..", "go", "run", "./internal/deb/mkdeb", "--arch", "amd64", "--version", version, "--time", "1796400000", "--bin", bin, "--host-bin", bin, "--out", out)
	return filepath.Join(out, "ota-agent_"+version+"_amd64.deb")
}

// hostMirror is the host's Debian mirror (its apt sources), as dist/image/mkrootfs.sh finds it.
func hostMirror(t *testing.T) string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		for _, line := range strings.Split(string(must(os.ReadFile(f))), "\n") {
			if u, ok := strings.CutPrefix(line, "URIs: "); ok && !strings.Contains(u, "security") {
				return strings.Fields(u)[0]
			}
		}
	}
	if raw, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "deb" && !strings.Contains(f[1], "security") {
				return f[1]
			}
		}
	}
	t.Skip("SKIPPED: no Debian mirror in the host's apt sources")
	return ""
}
