// Command mkdeb builds the project's Debian packages for one architecture (`make deb` runs it
// from the repository's root): ota-agent (the daemon, its unit, its configuration as a
// conffile, man pages, completion, the partition drop-in and bootloader scripts as examples)
// and ota-agent-tools (ota-release and ota-testserver, for the operator's workstation or CI).
// The man pages and completion are made from the programs' own --help (host binaries) and
// the configuration's keys.
//
//	go run ./internal/deb/mkdeb --arch arm64 --version V --time UNIX --bin bin/linux-arm64 \
//	    --host-bin bin --out bin/deb
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/deb"
)

// maintainer of the packages (the project's, not a person).
const maintainer = "ota-agent developers <maintainers@ota-agent.invalid>" // no list yet: .invalid says so

func main() {
	arch := flag.String("arch", "", "Debian architecture: amd64, arm64 or armhf")
	version := flag.String("version", "", "the package version (the Makefile's VERSION, as ota-agent version prints it)")
	epoch := flag.String("time", "", "every file's time, seconds since 1970 (SOURCE_DATE_EPOCH: the commit's time)")
	bin := flag.String("bin", "", "directory of the architecture's ota-agent, ota-release and ota-testserver")
	hostBin := flag.String("host-bin", "", "directory of the same programs built for this machine (their --help makes the man pages)")
	out := flag.String("out", "", "directory to write the .deb files into")
	only := flag.String("only", "", "build only this package (ota-agent or ota-agent-tools); --bin then needs only its programs")
	flag.Parse()
	if *arch == "" || *version == "" || *epoch == "" || *bin == "" || *hostBin == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "mkdeb: --arch, --version, --time, --bin, --host-bin and --out are required")
		os.Exit(2)
	}
	if err := build(*arch, *version, *epoch, *bin, *hostBin, *out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func build(arch, version, epoch, bin, hostBin, out, only string) error {
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return fmt.Errorf("--time %q: %w", epoch, err)
	}
	when := time.Unix(secs, 0).UTC()
	if err := deb.ValidVersion(version); err != nil {
		return err
	}
	help := map[string]*deb.Command{}
	for _, name := range []string{"ota-agent", "ota-release", "ota-testserver"} {
		if help[name], err = deb.HelpOf(filepath.Join(hostBin, name), name); err != nil {
			return err
		}
	}
	var f files
	packages := []struct {
		name string
		make func(arch, version string, when time.Time, bin string, help map[string]*deb.Command) *deb.Package
	}{{"ota-agent", f.agent}, {"ota-agent-tools", f.tools}}
	for _, pkg := range packages {
		if only != "" && only != pkg.name {
			continue // its programs need not be in --bin
		}
		p, name := pkg.make(arch, version, when, bin, help), pkg.name
		if f.err != nil {
			return f.err
		}
		path := filepath.Join(out, fmt.Sprintf("%s_%s_%s.deb", name, version, arch))
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		w, err := os.Create(path)
		if err != nil {
			return err
		}
		err = p.Write(w)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Println(path)
	}
	return nil
}

// files reads the repository's files, keeping the first error.
type files struct{ err error }

func (f *files) read(path string) []byte {
	raw, err := os.ReadFile(path)
	if err != nil && f.err == nil {
		f.err = err
	}
	return raw
}

func (f *files) agent(arch, version string, when time.Time, bin string, help map[string]*deb.Command) *deb.Package {
	doc := "/usr/share/doc/ota-agent/"
	see := ".SH FILES\n/etc/ota\\-agent/config.yaml, /var/lib/ota\\-agent (the state directory), /lib/systemd/system/ota\\-agent.service\n.SH SEE ALSO\n.BR ota-agent.yaml (5),\n.BR ota-release (1)\n"
	return &deb.Package{
		Control: control("ota-agent", version, arch, "Depends: init-system-helpers (>= 1.54~)\nSuggests: libubootenv-tool, grub-common\n",
			"verified over-the-air updates into A/B slots",
			"A daemon and command that keep an embedded Linux gateway's binaries and OS\nimage current from a CloudFront dynamic-OTA deployment. It verifies every byte\n(sizes, SHA-256, Ed25519 release statements, no rollback), installs into the\ninactive A/B slot or partition, switches atomically, health-checks, and commits\nor rolls back. The unit is enabled on installation and starts at the next boot\n(set server.url in /etc/ota-agent/config.yaml first)."),
		Files: []deb.File{
			{Path: "/usr/bin/ota-agent", Mode: 0o755, Data: f.read(filepath.Join(bin, "ota-agent"))},
			{Path: "/lib/systemd/system/ota-agent.service", Mode: 0o644, Data: f.read("dist/ota-agent.service")},
			{Path: "/etc/ota-agent/config.yaml", Mode: 0o640, Data: f.read("dist/config.yaml")},
			{Path: doc + "README.md", Mode: 0o644, Data: f.read("README.md")},
			{Path: doc + "copyright", Mode: 0o644, Data: f.read("dist/debian/copyright")},
			{Path: doc + "changelog.gz", Mode: 0o644, Data: deb.Gzip(changelog("ota-agent", version, when))},
			{Path: doc + "examples/partition.conf", Mode: 0o644, Data: f.read("dist/ota-agent.service.d/partition.conf")},
			{Path: doc + "examples/boot.cmd", Mode: 0o644, Data: f.read("dist/bootloader/boot.cmd")},
			{Path: doc + "examples/grub.cfg", Mode: 0o644, Data: f.read("dist/bootloader/grub.cfg")},
			{Path: "/usr/share/man/man8/ota-agent.8.gz", Mode: 0o644, Data: deb.Gzip([]byte(help["ota-agent"].Man("8", "System Administration", version, when, see)))},
			{Path: "/usr/share/man/man5/ota-agent.yaml.5.gz", Mode: 0o644, Data: deb.Gzip([]byte(deb.ConfigMan(version, when, string(f.read("README.md")), string(f.read("dist/config.yaml")))))},
			{Path: "/usr/share/bash-completion/completions/ota-agent", Mode: 0o644, Data: []byte(help["ota-agent"].Completion())},
			{Path: "/usr/share/lintian/overrides/ota-agent", Mode: 0o644, Data: f.read("dist/debian/ota-agent.lintian-overrides")},
		},
		Scripts: map[string][]byte{"postinst": f.read("dist/debian/postinst"), "prerm": f.read("dist/debian/prerm"), "postrm": f.read("dist/debian/postrm")},
		Conf:    []string{"/etc/ota-agent/config.yaml"},
		Time:    when,
	}
}

func (f *files) tools(arch, version string, when time.Time, bin string, help map[string]*deb.Command) *deb.Package {
	doc := "/usr/share/doc/ota-agent-tools/"
	p := &deb.Package{
		Control: control("ota-agent-tools", version, arch, "",
			"publisher tools for ota-agent fleets",
			"ota-release makes release keys, signs catalogs, writes deltas and offline\nbundles, and publishes a signed catalog to the deployment's S3 bucket and\nDynamoDB table. ota-testserver is the whole deployment (CloudFront edge,\norigin, firmware CDN) on loopback, for tests, demos and rehearsals."),
		Files: []deb.File{
			{Path: doc + "copyright", Mode: 0o644, Data: f.read("dist/debian/copyright")},
			{Path: doc + "changelog.gz", Mode: 0o644, Data: deb.Gzip(changelog("ota-agent-tools", version, when))},
			{Path: "/usr/share/lintian/overrides/ota-agent-tools", Mode: 0o644, Data: f.read("dist/debian/ota-agent-tools.lintian-overrides")},
		},
		Time: when,
	}
	for _, name := range []string{"ota-release", "ota-testserver"} {
		see := ".SH SEE ALSO\n.BR ota-agent (8)\n"
		p.Files = append(p.Files,
			deb.File{Path: "/usr/bin/" + name, Mode: 0o755, Data: f.read(filepath.Join(bin, name))},
			deb.File{Path: "/usr/share/man/man1/" + name + ".1.gz", Mode: 0o644, Data: deb.Gzip([]byte(help[name].Man("1", "User Commands", version, when, see)))},
			deb.File{Path: "/usr/share/bash-completion/completions/" + name, Mode: 0o644, Data: []byte(help[name].Completion())})
	}
	return p
}

func control(name, version, arch, more, synopsis, long string) string {
	var desc strings.Builder
	for _, line := range strings.Split(long, "\n") {
		desc.WriteString(" " + line + "\n")
	}
	return fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: %s\n%sSection: admin\nPriority: optional\nHomepage: https://github.com/ota-agent/ota-agent\nDescription: %s\n%s",
		name, version, arch, maintainer, more, synopsis, desc.String())
}

// changelog is the package's changelog (a native package: one entry, the build's).
func changelog(name, version string, when time.Time) []byte {
	return fmt.Appendf(nil, "%s (%s) unstable; urgency=medium\n\n  * Built from the source at version %s.\n\n -- %s  %s\n",
		name, version, version, maintainer, when.Format(time.RFC1123Z))
}
