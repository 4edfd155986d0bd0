//go:build system

package systemtest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// badHealth: an OS release that boots but fails the health hook. The agent on the new slot
// refuses it, points the bootloader back and reboots; the old slot runs on, and the refused
// image is not downloaded again.
func badHealth(r *rig) error {
	committed := r.bootedSlot()
	good := r.osVer
	r.publishOS("3-badhealth", func(tree string) func() {
		p := filepath.Join(tree, "etc/ota-test-bad-health")
		os.WriteFile(p, nil, 0o644)
		return func() { os.Remove(p) }
	})
	fetches := r.count("/firmware/os_" + r.cpu + "_3-badhealth")
	r.sh("systemctl kill -s USR1 --kill-whom=main ota-agent")
	if !r.bootEnded(15 * time.Minute) {
		return fmt.Errorf("the agent did not reboot into the new image within 15 minutes:\n%s", tail(r.vm.serial(), 30))
	}
	if env := r.hostEnv(); env["ota_slot"] != other(committed) || env["upgrade_available"] != "1" {
		return fmt.Errorf("environment before the trial boot: %s", envString(env))
	}
	if err := r.boot("bad-health-trial"); err != nil {
		return err
	}
	if !r.bootEnded(10 * time.Minute) {
		return fmt.Errorf("the failed trial did not reboot within 10 minutes:\n%s", tail(r.vm.serial(), 30))
	}
	if got := r.vm.grepSerial("failed its health check"); len(got) == 0 {
		return fmt.Errorf("the trial boot ended without the agent logging a failed health check:\n%s", tail(r.vm.serial(), 40))
	}
	env := r.hostEnv()
	if env["ota_slot"] != committed || env["upgrade_available"] != "0" {
		return fmt.Errorf("after the failed trial the environment is %s, want ota_slot=%s upgrade_available=0", envString(env), committed)
	}
	r.logf("  trial on slot %s failed health; agent pointed back: %s", other(committed), envString(env))
	r.osVer = good
	if err := r.boot("after-bad-health"); err != nil {
		return err
	}
	return r.judgeRefused(committed, "3-badhealth", fetches+1)
}

// judgeRefused: back on the committed slot, the release is refused, and a check is a 304
// that does not fetch the image again.
func (r *rig) judgeRefused(committed, version string, fetches int) error {
	st, err := r.settle("refused", 5*time.Minute, r.converged)
	if err != nil {
		return err
	}
	refused := false
	for _, x := range st.Refused {
		if x.Version == version {
			refused = true
			r.logf("  refused %s %s: %s", x.App, x.Version, x.Reason)
		}
	}
	if !refused || r.bootedSlot() != committed {
		return fmt.Errorf("slot %s, refusals %v; want slot %s and %s refused", r.bootedSlot(), st.Refused, committed, version)
	}
	before := st.LastCheck.Time
	r.sh("systemctl kill -s USR1 --kill-whom=main ota-agent")
	st, err = r.settle("refused", 3*time.Minute, func(s *status) bool { return s.LastCheck != nil && s.LastCheck.Time.After(before) })
	if err != nil {
		return err
	}
	if n := r.count("/firmware/os_" + r.cpu + "_" + version); st.LastCheck.Result != "up-to-date" || n != fetches {
		return fmt.Errorf("check after the refusal: %s, image fetched %d times (want %d)", st.LastCheck.Result, n, fetches)
	}
	if res := r.sh("ota-agent verify"); res.RC != 0 {
		return fmt.Errorf("ota-agent verify: exit %d: %s", res.RC, res.Output)
	}
	r.logf("  next check up-to-date, image fetched once, verify passes")
	return nil
}

// badBoot: an OS release whose init exits at once: the kernel panics ("Attempted to kill
// init"), panic=5 resets the board, and the bootloader falls back after bootlimit; the agent
// sees the fallback and refuses the release. (A root with no init at all is worse: the
// initramfs falls back to /bin/sh as PID 1 and waits forever; only a hardware watchdog armed
// by the bootloader ends that, and QEMU's virt board has none.)
func badBoot(r *rig) error {
	committed := r.bootedSlot()
	good := r.osVer
	r.publish("os_"+r.cpu, "4-noinit", r.noInitImage("4-noinit"), false)
	r.osVer = "4-noinit"
	fetches := r.count("/firmware/os_" + r.cpu + "_4-noinit")
	r.sh("systemctl kill -s USR1 --kill-whom=main ota-agent")
	if !r.bootEnded(15 * time.Minute) {
		return fmt.Errorf("the agent did not reboot into the new image within 15 minutes:\n%s", tail(r.vm.serial(), 30))
	}
	if err := r.vm.boot("no-init-trial"); err != nil {
		return err
	}
	if !r.bootEnded(8 * time.Minute) {
		return fmt.Errorf("the image without init did not reset the board within 8 minutes:\n%s", tail(r.vm.serial(), 30))
	}
	if len(r.vm.grepSerial("ota-systest")) > 0 {
		return fmt.Errorf("the image without init reached userspace")
	}
	r.logf("  slot %s never reached userspace: %s", other(committed), strings.Join(lastN(r.vm.grepSerial("anic"), 2), " | "))
	r.osVer = good
	if err := r.boot("after-no-init"); err != nil {
		return err
	}
	if got := r.vm.grepSerial("falling back"); len(got) == 0 {
		return fmt.Errorf("U-Boot did not fall back:\n%s", strings.Join(r.vm.grepSerial("OTA-UBOOT"), "\n"))
	}
	return r.judgeRefused(committed, "4-noinit", fetches+1)
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// powerCuts kills the board (SIGKILL of QEMU: the guest's page cache is lost) at a random
// moment of an install, boots it, and judges: the boot reaches userspace, the agent
// converges to what is published, `ota-agent verify` passes (the active slot is one whole
// generation, the committed OS partition is the recorded image). Each judged boot starts
// the next install.
func powerCuts(r *rig, n int, kinds []string) error {
	if r.install == nil {
		r.install = map[string]time.Duration{}
	}
	for i := 0; i < n; i++ {
		kind := kinds[i%len(kinds)]
		osv := r.osVer
		desc, err := r.cut(kind, i)
		if err != nil {
			return fmt.Errorf("cut %d (%s): %v", i+1, kind, err)
		}
		if err := r.boot("after-cut"); err != nil {
			return fmt.Errorf("cut %d (%s, %s): %v", i+1, kind, desc, err)
		}
		found, err := r.status()
		if err != nil {
			return fmt.Errorf("cut %d (%s, %s): %v", i+1, kind, desc, err)
		}
		st, err := r.settle("after-cut", 15*time.Minute, r.converged)
		if err != nil {
			return fmt.Errorf("cut %d (%s, %s): did not converge: %v", i+1, kind, desc, err)
		}
		if st.LastCheck != nil && st.LastCheck.Result == "updated" && st.LastCheck.Secs > 0 {
			r.install[kind] = time.Duration(st.LastCheck.Secs * float64(time.Second))
		}
		if res := r.sh("ota-agent verify"); res.RC != 0 {
			return fmt.Errorf("cut %d (%s, %s): ota-agent verify: exit %d: %s", i+1, kind, desc, res.RC, res.Output)
		}
		if len(st.Refused) > 0 && kind != "os-env" {
			return fmt.Errorf("cut %d: refusals after a power cut: %v", i+1, st.Refused)
		}
		r.cutsWhole++
		was := fmt.Sprintf("generation %d", found.Generation)
		if kind == "os-env" {
			was = "OS " + osv + " committed"
			if found.OS != nil && found.OS.State != nil {
				was = "OS " + found.OS.State.Current.Version + " committed, slot " + found.OS.Booted
			}
			was += "; " + r.fetchedAgain()
		}
		r.logf("  cut %d/%d %-8s %s; at boot: %s; converged to %s, verify ok", i+1, n, kind, desc, was, r.published())
	}
	return nil
}

// fetchedAgain is what an OS cut cost in bytes fetched twice: the firmware bytes served
// since its install began, less the image (the image was streamed into its partition and
// resumed from its last checkpoint, slots.os.checkpoint: 16 MiB).
func (r *rig) fetchedAgain() string {
	fi, err := os.Stat(filepath.Join(r.work, "catalog", "blobs", "os_"+r.cpu+"_"+r.osVer))
	if err != nil {
		return "image size unknown"
	}
	again := r.srv.Stats().BytesByPath["/firmware"] - r.fwBefore - fi.Size()
	return fmt.Sprintf("%.1f MiB of the %d MiB image fetched again (checkpoint 16 MiB)", float64(max(again, 0))/(1<<20), fi.Size()>>20)
}

func (r *rig) published() string {
	s := fmt.Sprintf("apps generation %d", r.gen)
	if r.osVer != "" {
		s += ", OS " + r.osVer
	}
	return s
}

// cut starts one install and kills the board during it.
func (r *rig) cut(kind string, i int) (string, error) {
	var watch string
	switch kind {
	case "full", "metadata":
		r.sh(fmt.Sprintf("echo OTA_AGENT_SERVER_PAYLOAD=%s > /etc/default/ota-agent && sync", kind))
		r.publishApps()
		watch = "/package"
	default:
		r.publishOS(fmt.Sprintf("%d", 10+i), nil)
		watch = "/firmware/os_" + r.cpu + "_" + r.osVer
		r.fwBefore = r.srv.Stats().BytesByPath["/firmware"]
	}
	n := r.count(watch)
	t0 := time.Now()
	if kind == "full" || kind == "metadata" {
		r.sh("systemctl restart --no-block ota-agent")
	} else {
		r.sh("systemctl kill -s USR1 --kill-whom=main ota-agent")
	}
	for r.count(watch) == n {
		if time.Since(t0) > 5*time.Minute || !r.vm.running() {
			return "", fmt.Errorf("the install did not start (no request for %s)", watch)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if kind == "os-env" {
		if !r.vm.waitSerial("OS image written", 15*time.Minute) {
			return "", fmt.Errorf("no 'OS image written' on the console within 15 minutes")
		}
		r.vm.kill()
		return "right after the env write", nil
	}
	d := r.install[kind]
	if d == 0 {
		d = r.install["first"]
	}
	if d == 0 {
		d = 10 * time.Second
	}
	delay := time.Duration(r.rng.Int64N(int64(d)))
	time.Sleep(delay)
	r.vm.kill()
	r.srv.SetFaults(testserver.Faults{})
	return fmt.Sprintf("at %s of ~%s", delay.Round(100*time.Millisecond), d.Round(time.Second)), nil
}

// readBack powers the board off cleanly and judges the image from the host: the bootloader
// environment (fw_printenv on the boot partition), and the state directory from the data
// partition (debugfs), checked by the host's ota-agent verify.
func readBack(r *rig) error {
	slot := r.bootedSlot()
	r.ctl.run(r.vm, "systemctl poweroff", 10*time.Second)
	if !r.bootEnded(3 * time.Minute) {
		return fmt.Errorf("the board did not power off")
	}
	env := r.hostEnv()
	if env["ota_slot"] != slot || env["upgrade_available"] != "0" {
		return fmt.Errorf("environment on the disk: %s, want ota_slot=%s upgrade_available=0", envString(env), slot)
	}
	data, err := r.extract("data")
	if err != nil {
		return err
	}
	root := filepath.Join(r.work, "readback")
	os.RemoveAll(root)
	os.MkdirAll(filepath.Join(root, "var/lib/ota-agent"), 0o755)
	if err := run("debugfs", "-R", "rdump / "+filepath.Join(root, "var/lib/ota-agent"), data); err != nil {
		return err
	}
	// rdump puts the filesystem's root directory's entries under the target.
	cfg := filepath.Join(r.work, "readback.yaml")
	os.WriteFile(cfg, []byte("server: {url: http://127.0.0.1:9/package}\ndevice: {cpu_arch: armv8}\ntrust: {allow_unsigned: true}\n"), 0o644)
	out, err := exec.Command(filepath.Join(r.repo, "bin/ota-agent"), "--root", root, "--config", cfg, "verify").CombinedOutput()
	if err != nil {
		return fmt.Errorf("host ota-agent verify of the read-back state directory: %v: %s", err, out)
	}
	r.logf("  env on disk: %s; host verify of the data partition: %s", envString(env), strings.TrimSpace(string(out)))
	return nil
}

// appUnits: apps.sensor.units names ota-app-sensor.service, which runs the active slot's
// sensor file. A new generation restarts it on the new file (a new invocation, the new
// MD5 in /run); a sensor build that makes the unit fail is rolled back and refused, and the
// unit is restarted on the old file.
func appUnits(r *rig) error {
	unit := func() (string, string) { // invocation, "<ActiveState> <md5 of the sensor it runs>"
		p := parseEnv(r.sh("systemctl show ota-app-sensor -p InvocationID -p ActiveState").Output)
		md5 := field(r.sh("cat /run/ota-app-sensor.md5 2>/dev/null || echo -").Output)
		return p["InvocationID"], p["ActiveState"] + " " + md5
	}
	inv0, _ := unit()
	r.publishApps()
	good := r.blobMD5("sensor", r.apps["sensor"])
	if _, err := r.trigger("units-update", r.converged); err != nil {
		return err
	}
	inv1, got := unit()
	if inv1 == inv0 || got != "active "+good {
		return fmt.Errorf("after the update the unit is %q (invocation %s → %s), want active with the new sensor %s", got, inv0, inv1, good)
	}
	if log := r.sh("journalctl -b -u ota-agent --no-pager -o cat | grep 'restarted units' | tail -1").Output; !strings.Contains(log, "ota-app-sensor.service") {
		return fmt.Errorf("the agent did not log the restart:\n%s", log)
	}
	r.logf("  update restarted ota-app-sensor (new invocation) on sensor %s", r.apps["sensor"])
	bad := fmt.Sprintf("%s-bad", r.apps["sensor"])
	rel := "blobs/sensor_" + bad
	if err := os.WriteFile(filepath.Join(r.work, "catalog", rel), []byte("BAD sensor build\n"), 0o644); err != nil {
		return err
	}
	r.publish("sensor", bad, rel, true)
	st, err := r.trigger("units-bad", func(s *status) bool {
		for _, x := range s.Refused {
			if x.Version == bad {
				return r.converged(s)
			}
		}
		return false
	})
	if err != nil {
		return err
	}
	var reason string
	for _, x := range st.Refused {
		if x.Version == bad {
			reason = x.Reason
		}
	}
	if !strings.Contains(reason, "ota-app-sensor.service") {
		return fmt.Errorf("refused %s for %q, want the unit named", bad, reason)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, got = unit(); got != "active "+good && time.Now().Before(deadline); _, got = unit() {
		time.Sleep(2 * time.Second)
	}
	if got != "active "+good {
		return fmt.Errorf("after the rollback the unit is %q, want active with the old sensor %s", got, good)
	}
	r.logf("  bad sensor refused (%s); rolled back, the unit runs sensor %s again", reason, r.apps["sensor"])
	return nil
}

// trigger asks the daemon for a check now and waits for want.
func (r *rig) trigger(tag string, want func(*status) bool) (*status, error) {
	r.sh("systemctl kill -s USR1 --kill-whom=main ota-agent")
	return r.settle(tag, 5*time.Minute, want)
}

func (r *rig) blobMD5(app, version string) string {
	b, err := os.ReadFile(filepath.Join(r.work, "catalog", "blobs", app+"_"+version))
	if err != nil {
		r.t.Fatal(err)
	}
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}

// packageUpgrade: the board was built with the previous build's package; dpkg -i of this
// build's package on the running board upgrades it, as an operator (or apt) would. The daemon
// restarts on the new binary (postinst's try-restart), its state (slot, generation, apps) and
// its configuration (the image's edit of the conffile) stay, and its next check is a 304.
func packageUpgrade(r *rig) error {
	before, err := r.status()
	if err != nil {
		return err
	}
	if v := r.sh("ota-agent version").Output; !strings.Contains(v, previousVersion) {
		return fmt.Errorf("the image runs %q, not the previous build's package %s", v, previousVersion)
	}
	conf := r.sh("md5sum /etc/ota-agent/config.yaml").Output
	pid := field(r.sh("systemctl show -p MainPID --value ota-agent").Output)
	pkg := r.currentDeb()
	if err := os.Link(pkg, filepath.Join(r.peers, "ota-agent.deb")); err != nil {
		return err
	}
	t0 := time.Now()
	res := r.sh("ota-systest-guest fetch http://10.0.2.100:8080/peers/ota-agent.deb /root/ota-agent.deb && dpkg -i /root/ota-agent.deb 2>&1")
	if res.RC != 0 {
		return fmt.Errorf("dpkg -i: exit %d:\n%s", res.RC, res.Output)
	}
	want := r.version()
	if v := r.sh("ota-agent version").Output; !strings.Contains(v, want) {
		return fmt.Errorf("after dpkg -i: %q, want %s", v, want)
	}
	if got := r.sh("dpkg-query -W -f '${Version} ${Status}' ota-agent").Output; got != want+" install ok installed" {
		return fmt.Errorf("dpkg-query: %q", got)
	}
	var show string
	for end := time.Now().Add(3 * time.Minute); time.Now().Before(end); time.Sleep(2 * time.Second) {
		show = r.sh("systemctl show -p MainPID -p ActiveState -p StatusText ota-agent").Output
		if !strings.Contains(show, "MainPID="+pid+"\n") && !strings.Contains(show, "MainPID=0\n") && strings.Contains(show, "ActiveState=active") && strings.Contains(show, "StatusText=idle") {
			break
		}
	}
	if strings.Contains(show, "MainPID="+pid+"\n") || !strings.Contains(show, "ActiveState=active") {
		return fmt.Errorf("the daemon did not restart on the new package:\n%s", show)
	}
	if exe := r.sh("readlink /proc/$(systemctl show -p MainPID --value ota-agent)/exe").Output; strings.Contains(exe, "(deleted)") {
		return fmt.Errorf("the daemon still runs the replaced binary: %s", exe)
	}
	if got := r.sh("md5sum /etc/ota-agent/config.yaml").Output; got != conf || r.sh("ls /etc/ota-agent/config.yaml.dpkg-* 2>/dev/null").Output != "" {
		return fmt.Errorf("the upgrade changed the configuration: %q, was %q", got, conf)
	}
	st, err := r.status()
	if err != nil {
		return err
	}
	if st.Slot != before.Slot || st.Generation != before.Generation || len(st.Apps) != len(before.Apps) {
		return fmt.Errorf("the upgrade changed the state: slot %s generation %d (%d apps), was %s %d (%d)", st.Slot, st.Generation, len(st.Apps), before.Slot, before.Generation, len(before.Apps))
	}
	if st, err = r.checkNow304("upgrade", st); err != nil {
		return fmt.Errorf("check after the upgrade: %w", err)
	}
	r.logf("  %s → %s by dpkg -i in %s; daemon restarted (%s); slot %s generation %d kept; configuration kept; next check 304",
		previousVersion, want, since(t0), strings.Join(strings.Fields(show), " "), st.Slot, st.Generation)
	return nil
}
