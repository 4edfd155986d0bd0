//go:build system

// Package systemtest boots whole A/B device images under qemu-system with U-Boot and
// systemd and runs the agent's scenarios on them, judged from the host: the serial console,
// the bootloader environment read from the disk with fw_printenv, files read back from the
// image, and what the guest answers. `make test-system` builds the rootfs and runs it.
package systemtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if a := os.Getenv(relayEnv); a != "" {
		relay(a)
	}
	os.Exit(m.Run())
}

type scenario struct {
	name string
	run  func(r *rig) error
}

// newRig builds the board's image from the rootfs make test-system made and starts the
// host side; it skips, saying why, when the rootfs is not there. The image gets this build's
// package (make deb), or with previous the previous build's, which a scenario upgrades.
func newRig(t *testing.T, arch, loader, cpu string, previous bool) *rig {
	name := arch
	if loader == "grub" {
		name = "grub"
	}
	return newRigOn(t, rigSpec{rootfs: "rootfs-" + arch, name: name, arch: arch, loader: loader, cpu: cpu, previous: previous})
}

// rigSpec: which rootfs (under OTA_SYSTEM_BUILD) a board is built from, whether it gets the
// previous build's package, and what the image adds to the test overlay (extra, given the
// rig: its work directory holds keys made for it).
type rigSpec struct {
	rootfs, name, arch, loader, cpu string
	previous                        bool
	extra                           func(r *rig) (files, links map[string]string)
	cpus                            int // vCPUs (0: one)
}

func newRigOn(t *testing.T, s rigSpec) *rig {
	build := os.Getenv("OTA_SYSTEM_BUILD")
	if build == "" {
		t.Skip("SKIPPED: OTA_SYSTEM_BUILD is not set (make test-system builds the rootfs and sets it)")
	}
	waitRootfs(t, build, s.rootfs)
	repo, _ := filepath.Abs("..")
	r := &rig{t: t, repo: repo, arch: s.arch, name: s.name, cpu: s.cpu, work: filepath.Join(build, "run-"+s.name),
		reqs: map[string]int{}, serials: map[string]int64{}, apps: map[string]string{},
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	os.RemoveAll(r.work)
	os.MkdirAll(r.work, 0o755)
	r.vm = &vm{name: s.name, arch: s.arch, loader: s.loader, dir: r.work, cpus: s.cpus}
	r.peers = filepath.Join(r.work, "www") // files the guest fetches (a package to upgrade to)
	os.MkdirAll(r.peers, 0o755)
	r.vm.forward = r.startServers()
	var pub string
	r.priv, pub = keyPair(t, r.work)
	if s.extra != nil {
		r.extraFiles, r.extraLinks = s.extra(r)
	}
	pkg := r.currentDeb()
	if s.previous {
		pkg = r.previousDeb()
	}
	if err := r.buildImage(filepath.Join(build, s.rootfs), pkg, pub); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.vm.kill)
	return r
}

// waitRootfs waits for run.sh's build of rootfs (it builds the armhf one while the arm64
// board runs): its .stamp appears when it is done, its .failed when it failed.
func waitRootfs(t *testing.T, build, rootfs string) {
	for start := time.Now(); ; time.Sleep(2 * time.Second) {
		if _, err := os.Stat(filepath.Join(build, rootfs+".stamp")); err == nil {
			return
		}
		if raw, err := os.ReadFile(filepath.Join(build, rootfs+".failed")); err == nil {
			t.Fatalf("building %s failed:\n%s", rootfs, raw)
		}
		if time.Since(start) > 20*time.Minute {
			t.Fatalf("no %s after 20 minutes (%s)", rootfs, filepath.Join(build, "mk"+rootfs+".log"))
		}
	}
}

// POWER_CUTS (default 3) is the number of cuts in OS image streams on the armv7 board, and
// (one fewer, at least one) in app installs on the GRUB board; ENV_CUTS (default 10) the
// cuts during environment writes, half on each U-Boot board. The arm64 board also cuts once
// right after the environment write. A bad image that never boots falls back on the armv7
// and GRUB boards (the arm64 board runs the same boot script as the armv7 one, and the
// U-Boot fallback is also booted by make test's TestBootScript*).
func cutsWanted(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n >= 0 {
		return n
	}
	return def
}

func TestSystemARM64(t *testing.T) {
	t.Parallel() // the boards are independent; while one waits on I/O the other computes
	r := newRig(t, "arm64", "uboot", "armv8", true)
	env := cutsWanted("ENV_CUTS", 10) / 2
	r.runScenarios([]scenario{
		{"first boot: apps install, READY and STATUS=, next check 304", firstBoot},
		{"package upgrade: dpkg -i of this build's package over the previous build's; the daemon restarts on it, state and configuration kept, next check 304", packageUpgrade},
		{"watchdog: a stopped agent is killed and restarted by systemd", watchdog},
		{"app units: restarted on the new generation; a failing app rolls back, its unit runs the old one", appUnits},
		{"OS update: written, env set, rebooted by the agent, trial, marked good", osUpdate},
		{"shipped sandbox (unit + partition drop-in) runs unmodified", sandbox},
		{"bad OS image that fails health: fallback, refused, not fetched again", badHealth},
		{"power cut just after the env write, 1", func(r *rig) error { return powerCuts(r, 1, []string{"os-env"}) }},
		{"read back: env, state directory and slots from the powered-off image", readBack},
		// Last: both slots hold whole OS images, and no boot follows.
		{fmt.Sprintf("power cuts during U-Boot environment writes, %d, each followed by a boot of a whole slot", env), func(r *rig) error { return envWriteCuts(r, env) }},
	}, env+1)
}

func TestSystemARMv7(t *testing.T) {
	t.Parallel() // the boards are independent; while one waits on I/O the other computes
	r := newRig(t, "armhf", "uboot", "armv7", false)
	cuts, env := cutsWanted("POWER_CUTS", 3), cutsWanted("ENV_CUTS", 10)
	env -= env / 2 // the arm64 board takes the other half
	r.runScenarios([]scenario{
		{"first boot: apps install, READY and STATUS=, next check 304", firstBoot},
		{"bad OS image that never reaches userspace: U-Boot falls back, refused", badBoot},
		{fmt.Sprintf("OS update through %d power cuts in its stream: resumed, trial, marked good", cuts), func(r *rig) error { return osUpdateThroughCuts(r, cuts) }},
		// Last: both slots hold whole OS images, and no boot follows.
		{fmt.Sprintf("power cuts during U-Boot environment writes, %d, each followed by a boot of a whole slot", env), func(r *rig) error { return envWriteCuts(r, env) }},
	}, cuts+env)
}

// TestSystemGRUB: the same arm64 system booted by GRUB from EFI firmware, its environment in
// grubenv on the EFI system partition. It takes the power cuts during app installs (they do
// not depend on the bootloader), so that the three boards take about as long.
func TestSystemGRUB(t *testing.T) {
	t.Parallel() // the boards are independent; while one waits on I/O the other computes
	r := newRig(t, "arm64", "grub", "armv8", false)
	apps := max(cutsWanted("POWER_CUTS", 3)-1, 1)
	r.runScenarios([]scenario{
		{"first boot: apps install, READY and STATUS=, next check 304", firstBoot},
		{"phased rollout: deferred by its signed ramp, installed by the daemon at its turn, both in the fleet view", phasedRollout},
		{fmt.Sprintf("power cuts during app installs (full and metadata), %d", apps), func(r *rig) error { return powerCuts(r, apps, []string{"full", "metadata"}) }},
		{"OS update: written, grubenv set, rebooted by the agent, trial, marked good", osUpdate},
		{"grubenv left empty by a cut mid-write: GRUB boots the committed slot from grubenv-redund", grubenvCut},
		{"bad OS image that never reaches userspace: GRUB falls back, refused", badBoot},
	}, apps)
}

// runScenarios runs the board's scenarios in order (each starts from the state the one
// before left), one line each, and the board's figure line.
func (r *rig) runScenarios(scenarios []scenario, cuts int) {
	t := r.t
	if n, err := strconv.Atoi(os.Getenv("SCENARIOS")); err == nil && n < len(scenarios) {
		r.logf("SCENARIOS=%d: running only the first %d of %d", n, n, len(scenarios))
		scenarios = scenarios[:n]
	}
	passed := 0
	start := time.Now()
	for _, s := range scenarios {
		t0 := time.Now()
		err := s.run(r)
		if err != nil {
			r.logf("FAIL %s (%s): %v", s.name, since(t0), err)
			t.Errorf("%s: %v", s.name, err)
			r.logf("remaining scenarios not run: they continue from this one's state")
			break
		}
		passed++
		r.logf("PASS %s (%s)", s.name, since(t0))
	}
	figure := fmt.Sprintf("%d/%d scenarios", passed, len(scenarios))
	if cuts > 0 {
		figure += fmt.Sprintf(", power cuts %d/%d whole", r.cutsWhole, cuts)
	}
	r.logf("%s, %d boots, %s", figure, r.vm.boots, since(start))
	// For run.sh's final line: the board's scenarios, and its cuts to add up.
	os.WriteFile(filepath.Join(r.work, "figure"), []byte(fmt.Sprintf("%d/%d scenarios\n", passed, len(scenarios))), 0o644)
	os.WriteFile(filepath.Join(r.work, "cuts"), []byte(fmt.Sprintf("%d %d\n", r.cutsWhole, cuts)), 0o644)
}

// firstBoot: the agent installs the published apps into its directory slots on first boot,
// reports READY and STATUS= to systemd, and a second check is a 304.
func firstBoot(r *rig) error {
	r.publishApps()
	if err := r.boot("first"); err != nil {
		return err
	}
	if res := r.sh("systemctl is-system-running --wait"); !strings.Contains(res.Output, "running") {
		return fmt.Errorf("system state %q, failed units:\n%s", res.Output, r.sh("systemctl --failed --no-pager").Output)
	}
	st, err := r.settle("first", 5*time.Minute, r.converged)
	if err != nil {
		return err
	}
	show := r.sh("systemctl show ota-agent -p Type -p ActiveState -p StatusText -p NRestarts").Output
	if !strings.Contains(show, "Type=notify") || !strings.Contains(show, "ActiveState=active") || !strings.Contains(show, "StatusText=idle") {
		return fmt.Errorf("systemd does not see a ready notify service with a status:\n%s", show)
	}
	if out := r.sh("systemctl status --no-pager ota-agent").Output; !strings.Contains(out, "Status: \"idle") {
		return fmt.Errorf("systemctl status shows no STATUS= line:\n%s", out)
	}
	if st.LastCheck != nil {
		r.install = map[string]time.Duration{"first": time.Duration(st.LastCheck.Secs * float64(time.Second))}
	}
	r.logf("  installed slot %s generation %d; systemd: %s", st.Slot, st.Generation, strings.Join(strings.Fields(show), " "))
	if _, err := r.checkNow304("first", st); err != nil {
		return fmt.Errorf("second check: %w", err)
	}
	if res := r.sh("ota-agent verify"); res.RC != 0 {
		return fmt.Errorf("ota-agent verify: exit %d: %s", res.RC, res.Output)
	}
	r.logf("  second check: up-to-date (304), verify passes")
	return nil
}

// checkNow304 makes the daemon check now (SIGUSR1) and wants one request, answered 304: the
// status after it is returned.
func (r *rig) checkNow304(tag string, st *status) (*status, error) {
	before, n := st.LastCheck.Time, r.count("/package")
	r.sh("systemctl kill -s USR1 --kill-whom=main ota-agent")
	st, err := r.settle(tag, 3*time.Minute, func(s *status) bool { return s.LastCheck != nil && s.LastCheck.Time.After(before) })
	if err != nil {
		return st, err
	}
	if st.LastCheck.Result != "up-to-date" || r.count("/package") != n+1 {
		return st, fmt.Errorf("%s (%s), %d requests", st.LastCheck.Result, st.LastCheck.Error, r.count("/package")-n)
	}
	return st, nil
}

// watchdog: SIGSTOP freezes the daemon; systemd's watchdog kills and restarts it.
func watchdog(r *rig) error {
	pid := field(r.sh("systemctl show -p MainPID --value ota-agent").Output)
	restarts := field(r.sh("systemctl show -p NRestarts --value ota-agent").Output)
	r.sh("kill -STOP " + pid)
	end := time.Now().Add(3 * time.Minute)
	for time.Now().Before(end) {
		out := r.sh("systemctl show -p MainPID -p NRestarts -p ActiveState ota-agent").Output
		if !strings.Contains(out, "MainPID="+pid+"\n") && !strings.Contains(out, "NRestarts="+restarts+"\n") && strings.Contains(out, "ActiveState=active") {
			log := r.sh("journalctl -b -u ota-agent --no-pager -o cat | grep -i -E 'watchdog|Scheduled restart'").Output
			if !strings.Contains(log, "Watchdog timeout") {
				return fmt.Errorf("restarted, but not by the watchdog:\n%s", log)
			}
			r.logf("  %s", strings.Join(strings.Fields(strings.ReplaceAll(out, "\n", " ")), " "))
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	return fmt.Errorf("the stopped agent (pid %s) was not restarted within 3 minutes", pid)
}

func field(s string) string { return strings.TrimSpace(s) }

// osUpdate: a new root filesystem image for the other partition is published; the agent
// writes it, sets the environment and reboots; U-Boot boots the new slot; health passes and
// the agent marks it good.
func osUpdate(r *rig) error {
	booted := r.bootedSlot()
	r.publishOS("2", nil)
	t0 := time.Now()
	r.sh("systemctl kill -s USR1 --kill-whom=main ota-agent")
	if !r.bootEnded(15 * time.Minute) {
		return fmt.Errorf("the agent did not reboot the board within 15 minutes:\n%s", tail(r.vm.serial(), 30))
	}
	r.osInstall = time.Since(t0)
	r.logf("  written and rebooted by the agent in %s", since(t0))
	return r.trialCommits(booted, "2")
}

// trialCommits: the board is off after the agent's reboot into a new OS version; the
// environment asks to try the other slot, which boots, passes, and is committed.
func (r *rig) trialCommits(booted, version string) error {
	want := other(booted)
	if env := r.hostEnv(); env["ota_slot"] != want || env["upgrade_available"] != "1" || env["bootcount"] != "0" {
		return fmt.Errorf("after the agent's reboot the environment is %s, want ota_slot=%s upgrade_available=1 bootcount=0", envString(env), want)
	}
	if err := r.boot("os-trial"); err != nil {
		return err
	}
	if _, err := r.settle("os-trial", 5*time.Minute, r.converged); err != nil {
		return err
	}
	if got := r.bootedSlot(); got != want {
		return fmt.Errorf("running slot %s, want %s", got, want)
	}
	if v := field(r.sh("cat /etc/ota-os-version").Output); v != version {
		return fmt.Errorf("/etc/ota-os-version is %q on the new slot, want %s", v, version)
	}
	res := r.sh("ota-agent verify")
	if res.RC != 0 {
		return fmt.Errorf("ota-agent verify: exit %d: %s", res.RC, res.Output)
	}
	env := r.guestEnv()
	if env["upgrade_available"] != "0" || env["ota_slot"] != want {
		return fmt.Errorf("after mark-good the environment is %s", envString(env))
	}
	r.logf("  booted slot %s, OS %s committed, env %s; verify: %s", want, version, envString(env), strings.Join(strings.Fields(res.Output), " "))
	return nil
}

func other(s string) string {
	if s == "a" {
		return "b"
	}
	return "a"
}

// bootedSlot is the slot the kernel was booted from (U-Boot's ota.slot= on the command line).
func (r *rig) bootedSlot() string {
	for _, f := range strings.Fields(r.sh("cat /proc/cmdline").Output) {
		if v, ok := strings.CutPrefix(f, "ota.slot="); ok {
			return v
		}
	}
	return "?"
}

func (r *rig) guestEnv() map[string]string {
	if r.vm.loader == "grub" {
		return parseEnv(r.sh("grub-editenv /boot/efi/grubenv list").Output)
	}
	return parseEnv(r.sh("fw_printenv -c /etc/fw_env.config").Output)
}

// sandbox: the unit and the partition drop-in on the device are the repository's files,
// byte for byte, and they are what systemd runs (the OS update above ran under them).
func sandbox(r *rig) error {
	for dev, repo := range map[string]string{
		"/lib/systemd/system/ota-agent.service":                  "dist/ota-agent.service",
		"/etc/systemd/system/ota-agent.service.d/partition.conf": "dist/ota-agent.service.d/partition.conf",
	} {
		b, err := os.ReadFile(filepath.Join(r.repo, repo))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		got := strings.Fields(r.sh("sha256sum " + dev).Output)
		if len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("%s on the device differs from %s", dev, repo)
		}
	}
	out := r.sh("systemctl show ota-agent -p FragmentPath -p DropInPaths -p ProtectSystem -p ReadWritePaths -p NoNewPrivileges").Output
	for _, want := range []string{"FragmentPath=/lib/systemd/system/ota-agent.service", "partition.conf", "ProtectSystem=strict", "/boot/firmware", "NoNewPrivileges=yes"} {
		if !strings.Contains(out, want) {
			return fmt.Errorf("systemd runs ota-agent without %q:\n%s", want, out)
		}
	}
	drops := r.sh("ls /etc/systemd/system/ota-agent.service.d/").Output
	r.logf("  unit and drop-in match the repository; drop-ins on the device: %s", strings.Join(strings.Fields(drops), " "))
	return nil
}
