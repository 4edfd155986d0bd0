//go:build system

package systemtest

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// deviceConfig is /etc/ota-agent/config.yaml of the test image: the host's testserver, a
// signing key, directory slots for the apps and the A/B root partitions for the OS image.
const deviceConfig = `server:
  url: http://10.0.2.100:8080/package
  payload: metadata
  firmware: {ota-systest: http://10.0.2.100:8080/firmware/}
  timeout: 60s
device:
  cpu_arch: auto
  os: prod
  attributes: {gw: prod}
state_dir: /var/lib/ota-agent
poll:
  jitter: 20s
report:
  url: http://10.0.2.100:8080/reports
trust:
  keys: [/etc/ota-agent/keys/release.pub.pem]
hooks:
  health: /usr/local/sbin/ota-health
apps:
  sensor: {units: [ota-app-sensor.service]}
health:
  grace: 5s
slots:
  os:
    backend: partition
    devices: {a: /dev/vda2, b: /dev/vda3}
    bootloader: BOOTLOADER
    fw_env_config: /etc/fw_env.config
    grubenv: /boot/efi/grubenv
    reboot: systemctl reboot
log:
  level: info
`

// The test image's additions (systemtest only, never a product image): the journal on the
// serial console, a static address on QEMU's user network, the guest helper, a health hook
// that a release can make fail, a short watchdog, and no units the scenarios do not need.
var overlayFiles = map[string]string{
	"etc/systemd/journald.conf.d/console.conf": "[Journal]\nForwardToConsole=yes\nMaxLevelConsole=info\nTTYPath=/dev/ttyAMA0\n",
	"etc/systemd/network/10-ota.network":       "[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
	// The scenarios' only change to the shipped unit: a watchdog the test can wait for.
	"etc/systemd/system/ota-agent.service.d/watchdog-test.conf": "[Service]\nWatchdogSec=20s\nRestartSec=2s\n",
	"etc/systemd/system/ota-systest.service": `[Unit]
Description=system test helper (test image only)
After=network.target ota-agent.service
[Service]
ExecStart=/usr/local/sbin/ota-systest-guest
Restart=always
RestartSec=1s
StandardOutput=journal+console
`,
	"usr/local/sbin/ota-health": `#!/bin/sh
# Health hook of the test image: an OS release built bad says so.
if [ -e /etc/ota-test-bad-health ]; then echo "health: this OS release is marked bad" >&2; exit 1; fi
systemctl is-active --quiet systemd-journald || exit 1
exit 0
`,
	"etc/ota-os-version": "1\n",
	// The app "sensor" as a service: it runs the file of the active slot (apps.sensor.units);
	// a build that starts with BAD exits 1, as a broken release would.
	"etc/systemd/system/ota-app-sensor.service": `[Unit]
Description=test app sensor, run from the agent's active slot (test image only)
[Service]
ExecStart=/usr/local/sbin/ota-app sensor
Restart=on-failure
RestartSec=1s
`,
	"usr/local/sbin/ota-app": `#!/bin/sh
f=/var/lib/ota-agent/current/$1
[ -e "$f" ] || exec sleep infinity
if [ "$(head -c 3 "$f")" = BAD ]; then echo "$1: this build is bad" >&2; exit 1; fi
md5sum < "$f" | cut -c1-32 > /run/ota-app-$1.md5
exec sleep infinity
`,
}

var overlayLinks = map[string]string{
	"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
	"etc/systemd/system/sockets.target.wants/systemd-networkd.socket":     "/lib/systemd/system/systemd-networkd.socket",
	"etc/systemd/system/multi-user.target.wants/ota-systest.service":      "/etc/systemd/system/ota-systest.service",
	"etc/systemd/system/multi-user.target.wants/ota-app-sensor.service":   "/etc/systemd/system/ota-app-sensor.service",
	"etc/systemd/system/serial-getty@ttyAMA0.service":                     "/dev/null",
	"etc/systemd/system/getty@tty1.service":                               "/dev/null",
	"etc/systemd/system/apt-daily.timer":                                  "/dev/null",
	"etc/systemd/system/apt-daily-upgrade.timer":                          "/dev/null",
	"etc/systemd/system/dpkg-db-backup.timer":                             "/dev/null",
	"etc/systemd/system/e2scrub_all.timer":                                "/dev/null",
	"etc/systemd/system/e2scrub_reap.service":                             "/dev/null",
	"etc/systemd/system/fstrim.timer":                                     "/dev/null",
	"etc/systemd/system/systemd-timesyncd.service":                        "/dev/null",
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// buildImage assembles the board's disk with dist/image/mkdisk.sh, the agent installed from
// its package pkg: the image builders' path.
func (r *rig) buildImage(rootfs, pkg, pubKey string) error {
	start := time.Now()
	ov := filepath.Join(r.work, "overlay")
	os.RemoveAll(ov)
	files, links := maps.Clone(overlayFiles), maps.Clone(overlayLinks)
	maps.Copy(files, r.extraFiles)
	maps.Copy(links, r.extraLinks)
	for p, body := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(p, "usr/local/sbin/") {
			mode = 0o755
		}
		os.MkdirAll(filepath.Join(ov, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(ov, p), []byte(body), mode); err != nil {
			return err
		}
	}
	for p, target := range links {
		os.MkdirAll(filepath.Join(ov, filepath.Dir(p)), 0o755)
		if err := os.Symlink(target, filepath.Join(ov, p)); err != nil {
			return err
		}
	}
	goarch, goarm := "arm64", ""
	if r.arch == "armhf" {
		goarch, goarm = "arm", "7"
	}
	helper := filepath.Join(ov, "usr/local/sbin/ota-systest-guest")
	b := exec.Command("go", "build", "-trimpath", "-o", helper, "./systemtest/guest")
	b.Dir = r.repo
	b.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if out, err := b.CombinedOutput(); err != nil {
		return fmt.Errorf("build guest helper: %v\n%s", err, out)
	}
	cfg := filepath.Join(r.work, "config.yaml")
	os.WriteFile(cfg, []byte(strings.Replace(deviceConfig, "BOOTLOADER", r.vm.loader, 1)), 0o644)
	out := filepath.Join(r.work, "image")
	if err := run(filepath.Join(r.repo, "dist/image/mkdisk.sh"), "--rootfs", rootfs, "--arch", r.arch,
		"--deb", pkg, "--config", cfg, "--key", pubKey, "--overlay", ov, "--out", out,
		// The state directory stages an OS image before the partition write: room for one.
		"--data-size", "1024", "--bootloader", r.vm.loader); err != nil {
		return err
	}
	r.tree = filepath.Join(out, "tree")
	st, err := os.Stat(filepath.Join(out, "root.img"))
	if err != nil {
		return err
	}
	r.rootMB = int(st.Size() >> 20)
	raw, err := os.ReadFile(filepath.Join(out, "layout"))
	if err != nil {
		return err
	}
	r.layout = map[string][2]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.Fields(l)
		a, _ := strconv.Atoi(f[1])
		n, _ := strconv.Atoi(f[2])
		r.layout[f[0]] = [2]int{a, n}
	}
	r.vm.disk = filepath.Join(out, "disk.img")
	r.logf("image built in %s (root filesystem %d MiB)", since(start), r.rootMB)
	return nil
}

// extract copies partition name out of the disk image (the board must be off).
func (r *rig) extract(name string) (string, error) {
	p := r.layout[name]
	out := filepath.Join(r.work, name+".img")
	err := run("dd", "if="+r.vm.disk, "of="+out, "bs=1M", "skip="+strconv.Itoa(p[0]), "count="+strconv.Itoa(p[1]), "status=none")
	return out, err
}

// version is this build's version (make deb named its packages with it).
func (r *rig) version() string {
	out, err := exec.Command(filepath.Join(r.repo, "dist/debian/version.sh")).Output()
	if err != nil {
		r.t.Fatalf("dist/debian/version.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// currentDeb is this build's ota-agent package for the board (r.arch is Debian's name) (make test-system runs make deb).
func (r *rig) currentDeb() string {
	p := filepath.Join(r.repo, "bin/deb", fmt.Sprintf("ota-agent_%s_%s.deb", r.version(), r.arch))
	if _, err := os.Stat(p); err != nil {
		r.t.Fatalf("no package of this build: %v (make deb writes it; make test-system runs it)", err)
	}
	return p
}

// previousVersion is the version the previous build's package carries here: the same source
// relinked with a lower version, so that dpkg -i of this build's is an upgrade.
const previousVersion = "0.0~previous"

// previousDeb builds the ota-agent package for the board at previousVersion.
func (r *rig) previousDeb() string {
	dir := filepath.Join(r.work, "previous")
	os.MkdirAll(dir, 0o755)
	goarch, goarm := "arm64", ""
	if r.arch == "armhf" {
		goarch, goarm = "arm", "7"
	}
	ld := "-s -w -X main.version=" + previousVersion + " -X github.com/ota-agent/ota-agent/agent.Version=" + previousVersion
	b := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-ldflags", ld, "-o", dir+"/", "./cmd/ota-agent")
	b.Dir = r.repo
	b.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if out, err := b.CombinedOutput(); err != nil {
		r.t.Fatalf("build the previous agent: %v\n%s", err, out)
	}
	m := exec.Command("go", "run", "./internal/deb/mkdeb", "--only", "ota-agent", "--arch", r.arch, "--version", previousVersion,
		"--time", "1796400000", "--bin", dir, "--host-bin", filepath.Join(r.repo, "bin"), "--out", dir)
	m.Dir = r.repo
	if out, err := m.CombinedOutput(); err != nil {
		r.t.Fatalf("mkdeb the previous package: %v\n%s", err, out)
	}
	return filepath.Join(dir, fmt.Sprintf("ota-agent_%s_%s.deb", previousVersion, r.arch))
}
