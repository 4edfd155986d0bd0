//go:build system

package systemtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// osUpdateThroughCuts is the OS update of osUpdate with the board's power cut n times at
// random moments of the image's stream into the inactive partition (throttled, so that
// every cut lands inside it), the agent in full-payload mode: the first cut lands in the
// payload's gzip stream, and each boot after a cut resumes the image from its last
// checkpoint with a Range request to the firmware CDN (one metadata request first: a gzip
// stream cannot resume), so the later cuts land in those. The bootloader is never asked to
// try the unfinished slot. Then the agent finishes, reboots into the trial, and commits;
// the board goes back to metadata mode.
func osUpdateThroughCuts(r *rig, n int) error {
	booted := r.bootedSlot()
	r.publishOS("2", nil)
	image := "/firmware/os_" + r.cpu + "_" + r.osVer
	fi, err := os.Stat(filepath.Join(r.work, "catalog", "blobs", "os_"+r.cpu+"_"+r.osVer))
	if err != nil {
		return err
	}
	const rate = 8 << 20
	fetched := func() int64 { st := r.srv.Stats(); return st.BytesByPath["/firmware"] + st.BytesByPath["/package"] }
	streams := func() int { return r.count(image) + r.count("/package") }
	r.fwBefore = fetched()
	r.mu.Lock()
	r.ranges = nil
	r.mu.Unlock()
	r.srv.SetFaults(testserver.Faults{RateBPS: rate})
	defer r.srv.SetFaults(testserver.Faults{})
	seen := streams()
	r.sh("sed -i 's/^  payload: metadata$/  payload: full/' /etc/ota-agent/config.yaml && systemctl restart ota-agent && systemctl kill -s USR1 --kill-whom=main ota-agent")
	for i := 1; i <= n; i++ {
		// The stream starts (or, after a boot, resumes): cut it at a random moment of what
		// is left, so the next cut still finds some.
		t0 := time.Now()
		for streams() == seen {
			if time.Since(t0) > 5*time.Minute || !r.vm.running() {
				return fmt.Errorf("cut %d: no request for the payload or %s within 5 minutes", i, image)
			}
			time.Sleep(20 * time.Millisecond)
		}
		seen = streams()
		left := time.Duration(float64(max(fi.Size()-(fetched()-r.fwBefore), rate)) / rate * float64(time.Second))
		delay := time.Second + time.Duration(r.rng.Int64N(int64(left)/int64(n-i+2)))
		time.Sleep(delay)
		r.vm.kill()
		env := r.hostEnv()
		if env["ota_slot"] != booted || env["upgrade_available"] == "1" {
			return fmt.Errorf("cut %d at %s of the stream: the environment asks for %s before the image is whole", i, delay.Round(100*time.Millisecond), envString(env))
		}
		if err := r.boot("after-stream-cut"); err != nil {
			return fmt.Errorf("cut %d: %v", i, err)
		}
		if got := r.bootedSlot(); got != booted {
			return fmt.Errorf("cut %d: booted slot %s, want %s", i, got, booted)
		}
		r.cutsWhole++
		r.logf("  stream cut %d/%d at %s of what was left; env %s; booted slot %s", i, n, delay.Round(100*time.Millisecond), envString(env), booted)
	}
	if !r.bootEnded(15 * time.Minute) {
		return fmt.Errorf("after %d cuts the agent did not finish the image and reboot within 15 minutes:\n%s", n, tail(r.vm.serial(), 30))
	}
	r.mu.Lock()
	ranges := strings.Join(r.ranges, ", ")
	r.mu.Unlock()
	again := fetched() - r.fwBefore - fi.Size()
	// Each cut loses what was written after the last checkpoint (16 MiB at most) and what
	// was in flight to the board (its sockets and buffers): 16 MiB more is generous.
	if limit := int64(n) * 32 << 20; again > limit {
		return fmt.Errorf("%d cuts fetched %.1f MiB again (resumed at %s), more than %d MiB: the stream did not resume from its checkpoints", n, float64(again)/(1<<20), ranges, limit>>20)
	}
	if ranges == "" {
		return fmt.Errorf("%d cuts, and no Range request resumed the image", n)
	}
	r.logf("  %d cuts (the first in the full payload): %.1f MiB of the %d MiB image fetched again (checkpoint 16 MiB); resumed with %s", n, float64(max(again, 0))/(1<<20), fi.Size()>>20, ranges)
	if err := r.trialCommits(booted, "2"); err != nil {
		return err
	}
	r.sh("sed -i 's/^  payload: full$/  payload: metadata/' /etc/ota-agent/config.yaml && systemctl restart ota-agent")
	return nil
}

// envWriteCuts cuts the power n times while the U-Boot environment is being written, and
// judges each cut at the next power-on: U-Boot finds a whole copy, boots the slot it names,
// and that slot's root mounts. The writes are fw_setenv's, as the agent makes them, in a
// loop that alternates "try the other slot" and "back to the booted one", on a disk whose
// writes are throttled so that each write is in flight for a while. One boot sets the loop
// up and is saved as a snapshot (savevm, on a qcow2 overlay of the disk); every cut resumes
// that snapshot, waits a random moment and kills QEMU, so n cuts cost n U-Boot runs, not n
// Linux boots. The overlay is dropped after: the board's own disk is as it was, and the
// board is left off.
func envWriteCuts(r *rig, n int) error {
	var booted string
	if r.vm.running() {
		booted = r.bootedSlot()
		r.ctl.run(r.vm, "systemctl poweroff", 10*time.Second)
		if !r.bootEnded(3 * time.Minute) {
			return fmt.Errorf("the board did not power off")
		}
	} else if booted = r.hostEnv()["ota_slot"]; booted == "" { // after readBack: off already
		booted = "a"
	}
	ov := filepath.Join(r.work, "envcut.qcow2")
	r.vm.overlay, r.vm.monitor = ov, filepath.Join(r.work, "envcut.monitor")
	defer func() {
		if r.vm.overlay != "" { // failed on the overlay: the board's own disk boots next
			r.vm.kill()
		}
		os.Remove(ov)
		r.vm.overlay, r.vm.loadvm = "", ""
	}()
	if err := run("qemu-img", "create", "-q", "-f", "qcow2", "-b", r.vm.disk, "-F", "raw", r.vm.overlay); err != nil {
		return err
	}
	if err := r.boot("env-loop"); err != nil {
		return err
	}
	try := fmt.Sprintf("ota_slot=%s\nupgrade_available=1\nbootcount=0\n", other(booted))
	back := fmt.Sprintf("ota_slot=%s\nupgrade_available=0\nbootcount=0\n", booted)
	r.sh(fmt.Sprintf("systemctl stop ota-agent; printf '%s' > /run/env-try; printf '%s' > /run/env-back", try, back))
	// Each write announced on the console before and after: the log says where a cut fell.
	r.sh(`nohup sh -c 'while :; do for s in try back; do echo "ENVLOOP: writing $s" > /dev/ttyAMA0; ` +
		`fw_setenv -c /etc/fw_env.config -s /run/env-$s; echo "ENVLOOP: wrote $s" > /dev/ttyAMA0; done; done' >/dev/null 2>&1 &`)
	if !r.vm.waitSerial("ENVLOOP: wrote back", 2*time.Minute) {
		return fmt.Errorf("the fw_setenv loop did not run:\n%s", tail(r.vm.serial(), 20))
	}
	if out, err := r.vm.hmp("savevm envloop", 5*time.Minute); err != nil || strings.Contains(out, "rror") {
		return fmt.Errorf("savevm: %v %s", err, out)
	}
	r.vm.kill()
	// What U-Boot may read: one of the loop's two environments, never a mix or the defaults.
	states := map[string]string{
		"ota_slot=" + other(booted) + " upgrade_available=1 bootcount=0 bootlimit=1": "try",
		"ota_slot=" + booted + " upgrade_available=0 bootcount=0 bootlimit=1":        "back",
	}
	counts := map[string]int{}
	for i := 1; i <= n; i++ {
		r.vm.loadvm = "envloop"
		if err := r.vm.boot(fmt.Sprintf("envloop-%d", i)); err != nil {
			return err
		}
		delay := time.Duration(500+r.rng.IntN(3000)) * time.Millisecond
		time.Sleep(delay)
		r.vm.kill()
		loop := lastN(r.vm.grepSerial("ENVLOOP:"), 1)
		r.vm.loadvm = ""
		if err := r.vm.boot(fmt.Sprintf("after-env-cut-%d", i)); err != nil {
			return err
		}
		if !r.vm.waitSerial("EXT4-fs (vda", 5*time.Minute) {
			return fmt.Errorf("env cut %d (%v): no root filesystem mounted after the cut:\n%s", i, loop, strings.Join(r.vm.grepSerial("OTA-UBOOT"), "\n"))
		}
		r.vm.kill()
		uboot := r.vm.grepSerial("OTA-UBOOT")
		copies, env, slot := lineAfter(uboot, "env copies "), "ota_slot="+lineAfter(uboot, "env ota_slot="), booted
		if s := lineAfter(uboot, "booting slot "); s != "" {
			slot = s[:1]
		}
		mounted := r.vm.grepSerial("EXT4-fs (vda")[:1]
		part := map[string]string{"a": "vda2", "b": "vda3"}[slot]
		name, ok := states[env]
		if !ok || len(mounted) == 0 || !strings.Contains(mounted[0], part) || !strings.Contains(copies, "ok=1") || len(loop) == 0 {
			return fmt.Errorf("env cut %d at %s (%v): U-Boot read %q (%s) and booted slot %s, mounted %v", i, delay, loop, env, copies, slot, mounted)
		}
		// The loop's last word: "writing X" (the cut fell in that write) or "wrote X".
		f := strings.Fields(loop[0])
		what := "the environment before the write"
		switch {
		case f[1] == "wrote" && f[2] != name:
			return fmt.Errorf("env cut %d: fw_setenv had written %s, U-Boot read %s (%s)", i, f[2], name, copies)
		case f[1] == "wrote":
			what = "between writes"
		case f[2] == name:
			what = "the write in flight"
		}
		counts[what]++
		r.cutsWhole++
		r.logf("  env cut %d/%d at %s, %s; U-Boot: %s (%s: %s); booted slot %s, %s mounted", i, n, delay.Round(100*time.Millisecond), strings.TrimPrefix(loop[0], "ENVLOOP: "), copies, name, what, slot, part)
	}
	r.logf("  %d cuts during environment writes, each booted a whole slot: %d the write in flight, %d the environment before it, %d between writes",
		n, counts["the write in flight"], counts["the environment before the write"], counts["between writes"])
	r.vm.overlay, r.vm.loadvm = "", ""
	return nil // the board's own disk is as it was; the next boot (if any) powers it on
}

// lineAfter is the rest of the first line that has prefix (after "OTA-UBOOT: ").
func lineAfter(lines []string, prefix string) string {
	for _, l := range lines {
		if _, rest, ok := strings.Cut(l, "OTA-UBOOT: "+prefix); ok {
			return rest
		}
	}
	return ""
}

// grubenvCut: grub-editenv truncates grubenv before it writes it, so a cut between the two
// leaves the file empty (made so here, on the powered-off disk, with both copies holding
// the committed slot as after the agent's mark-good). GRUB reads grubenv-redund and boots
// the committed slot, not the default; the agent reads the same copy, and its next write
// (the bad image's trial that follows) makes grubenv whole again.
func grubenvCut(r *rig) error {
	slot := r.bootedSlot()
	r.ctl.run(r.vm, "systemctl poweroff", 10*time.Second)
	if !r.bootEnded(3 * time.Minute) {
		return fmt.Errorf("the board did not power off")
	}
	empty := filepath.Join(r.work, "empty-grubenv")
	os.WriteFile(empty, nil, 0o644)
	if err := run("mcopy", "-o", "-i", r.vm.disk+"@@1M", empty, "::grubenv"); err != nil {
		return err
	}
	if err := r.boot("grubenv-cut"); err != nil {
		return err
	}
	grub := strings.Join(r.vm.grepSerial("OTA-GRUB"), "\n")
	if !strings.Contains(grub, "using grubenv-redund") || !strings.Contains(grub, "booting slot "+slot) {
		return fmt.Errorf("with grubenv empty GRUB did not boot slot %s from grubenv-redund:\n%s", slot, grub)
	}
	st, err := r.settle("grubenv-cut", 5*time.Minute, r.converged)
	if err != nil {
		return err
	}
	if st.OS == nil || st.OS.Env["ota_slot"] != slot {
		return fmt.Errorf("the agent reads the environment as %v, want ota_slot=%s from grubenv-redund", st.OS, slot)
	}
	r.logf("  grubenv empty: GRUB booted slot %s from grubenv-redund; the agent reads ota_slot=%s, converged", slot, st.OS.Env["ota_slot"])
	return nil
}
