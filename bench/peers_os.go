package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ota-agent/ota-agent/internal/testenv"
)

// The OS-image row: measured inside the booted arm64 board by systemtest's TestPeersOS (its
// doc says how), from a bench-only rootfs that adds the peers' arm64 packages to the test
// image's and keeps the squashfs module RAUC's bundles mount.

const peersRootfs = "rootfs-arm64-peers"

var peersPackages = "mender-client,rauc,rauc-service,swupdate,strace"

const osMeasure = "OS image 256 MiB to the inactive partition, booted arm64 VM (TCG)"

// osImageJob builds what the board needs (the arm64 agent, the peers' rootfs, cached like
// make test-system's), runs TestPeersOS and turns its report into rows.
func (b *bench) osImageJob(t *peerTable, _ *peerWorld) {
	if b.quick {
		t.add(peerLine{measure: osMeasure, cells: map[string]string{"ota-agent": "not run with -quick"}})
		return
	}
	rep, err := b.osImageRun()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers: OS image:", err)
		msg := "failed: " + strings.SplitN(err.Error(), "\n", 2)[0]
		t.add(peerLine{measure: osMeasure, cells: map[string]string{"ota-agent": msg, "Mender": msg, "SWUpdate": msg, "RAUC": msg}})
		t.notes = append(t.notes, "OS image: the run failed ("+msg+"); the board's serial logs are in $OTA_SYSTEM_BUILD/run-peers/.")
		return
	}
	val := func(f func(testenv.PeerOSRun) float64) []peerVal {
		var out []peerVal
		for _, r := range rep.Runs {
			if r.RC == 0 && r.Written && r.EnvS >= 0 {
				out = append(out, peerVal{r.Agent, r.Mode, f(r)})
			}
		}
		return out
	}
	for _, r := range rep.Runs {
		if r.RC != 0 || !r.Written || r.EnvS < 0 {
			t.notes = append(t.notes, fmt.Sprintf("OS image: %s (%s) did not install (exit %d, image read back %v, env asked %v), so it has no figures: %s",
				r.Agent, r.Mode, r.RC, r.Written, r.EnvS >= 0, strings.Join(strings.Fields(tail(r.Output, 600)), " ")))
		}
	}
	t.figures(osMeasure+": wall time", val(func(r testenv.PeerOSRun) float64 { return r.WallS }), secs, nil)
	t.figures(osMeasure+": time until the bootloader env asks to try it", val(func(r testenv.PeerOSRun) float64 { return r.EnvS }), secs, nil)
	t.figures(osMeasure+": CPU time (user+sys)", val(func(r testenv.PeerOSRun) float64 { return r.CPUS }), secs, nil)
	t.figures(osMeasure+": peak RSS (largest process)", val(func(r testenv.PeerOSRun) float64 { return float64(r.RSSKB) / 1024 }), func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }, nil)
	t.figures(osMeasure+": bytes from the network", val(func(r testenv.PeerOSRun) float64 { return float64(r.Net) }), func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }, nil)
	t.figures(osMeasure+": bytes written outside the slot (state_dir, temporary files, logs)", val(func(r testenv.PeerOSRun) float64 { return float64(r.Outside) }), func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }, nil)
	l := peerLine{measure: osMeasure + ": image flushed before the env asks to try it (strace)", cells: map[string]string{}}
	for _, r := range rep.Runs {
		l.cells[r.Agent] = strings.TrimPrefix(l.cells[r.Agent]+"<br>", "<br>") + fmt.Sprintf("%s (%s)", r.Durable, r.Mode)
	}
	t.add(l)
	var src []string
	for _, r := range rep.Runs {
		src = append(src, fmt.Sprintf("%s from %s", r.Agent, r.Source))
	}
	t.notes = append(t.notes, fmt.Sprintf("OS image (systemtest TestPeersOS inside one boot of the arm64 board under qemu-system TCG, 2 vCPUs; kernel %s; %s): each figure is the median of 3 timed runs per agent, the agents in turn within each round (the host moves one agent's figures by tens of percent from run to run); "+
		"a 256 MiB ext4 image holding 228 MiB of random bytes (so compression changes little) written to /dev/vda3 while the board runs from /dev/vda2, "+
		"slot B wiped and the environment set back to \"running A\" before each agent, page cache dropped. Every agent checks a signature (ota-agent Ed25519, Mender ECDSA P-256, RAUC and SWUpdate CMS). "+
		"Each was read back after its run: the partition's first 256 MiB hash to the image's SHA-256 for every agent. "+
		"The env time is when the U-Boot environment file first held what asks that agent's boot script to try slot B (ota-agent and SWUpdate's bootenv: ota_slot=b upgrade_available=1; Mender: mender_boot_part=3 upgrade_available=1; RAUC: BOOT_ORDER=\"B A\"), polled every 100 ms by the guest helper. "+
		"RAUC's CPU and RSS are its D-Bus service's (restarted before the run), which does the work the `rauc install` client asks for. "+
		"Durability: each install ran once more under strace (-f -y; RAUC's service attached to), judged by systemtest's judgeOS: after the last write to /dev/vda3, was the device flushed (fsync/fdatasync of it, sync, syncfs, BLKFLSBUF, or opened O_SYNC/O_DSYNC) before the first write into /boot/firmware that followed? Bytes written outside the slot: the kernel's sectors-written counters (/proc/diskstats) of every partition but /dev/vda3, synced before and after the timed run: state directories, temporary files, logs and the environment; RAUC's include the bundle it installs from, copied to the data partition before the run. Sources: %s.",
		rep.Kernel, strings.ReplaceAll(rep.Versions, "\n", ", "), strings.Join(src, "; ")),
		"OS image, why the figures differ: ota-agent streams the image straight into the slot as it arrives (every 16 MiB the slot is fsync'd and the offset recorded, so a restart resumes there with Range + If-Range), fsyncs, and hashes it once, reading it back from the medium with O_DIRECT; that SHA-256 is checked against the size, SHA-256 and Ed25519 statement before the environment is written: nothing of the image goes to state_dir. Until 2026-12-06 it hashed the image as it was written and compared the read-back with a CRC-32C (SHA-256 55% and CRC-32C 25% of its CPU under TCG). Mender and SWUpdate stream the artifact straight into the slot, hashing as they go, with no read-back; RAUC copies the image out of its mounted bundle. "+
			"Until ota-agent streamed (2026-12-05) it downloaded the image into state_dir, copied it to the slot and compared the slot byte for byte with the download: 19.3 s wall and 22.5 s CPU on this board, behind every peer; before that it also hashed the slot a second time through the page cache: 36.7 s and 42.9 s, half of it SHA-256 under TCG. "+
			"Bytes: RAUC's bundle is a squashfs, which compresses the image's free blocks and ext4 metadata (the image holds 228 MiB of random bytes in 256); ota-agent's full mode (tar.gz) compresses them too, its metadata mode sends the image as it is. "+
			"Durability: SWUpdate's raw handler writes the slot and closes it without an fsync (the last close writes the pages back but flushes no device cache) before its bootenv write, so a power cut can leave U-Boot told to try a slot whose last bytes are in the disk's volatile cache.")
}

// osImageRun: the arm64 agent, the rootfs, then the booted board.
func (b *bench) osImageRun() (*testenv.PeerOSReport, error) {
	build := os.Getenv("OTA_SYSTEM_BUILD")
	if build == "" {
		build = ".system-build"
	}
	build, _ = filepath.Abs(build)
	if err := os.MkdirAll(build, 0o755); err != nil {
		return nil, err
	}
	for _, c := range [][]string{{"./dist/image/host-deps.sh"}, {"make", "-s", "deb"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(c, " "), err, tail(string(out), 2000))
		}
	}
	if err := buildPeersRootfs(build); err != nil {
		return nil, err
	}
	out := filepath.Join(build, "peers-os.json")
	os.Remove(out)
	cmd := exec.Command("go", "test", "-tags", "system", "-count=1", "-v", "-timeout", "90m", "-run", "^TestPeersOS$", "./systemtest")
	cmd.Env = append(os.Environ(), "OTA_SYSTEM_BUILD="+build, "OTA_PEERS_OS_OUT="+out)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var last []string
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "system:") {
			fmt.Fprintln(os.Stderr, "bench-peers:", l)
		}
		last = append(last, l)
		if len(last) > 40 {
			last = last[1:]
		}
	}
	werr := cmd.Wait()
	raw, err := os.ReadFile(out)
	if werr != nil && err != nil { // no report: the board never got to the installs
		return nil, fmt.Errorf("TestPeersOS: %v\n%s", werr, strings.Join(last, "\n"))
	}
	if err != nil {
		return nil, err
	}
	var rep testenv.PeerOSReport
	return &rep, json.Unmarshal(raw, &rep)
}

// buildPeersRootfs builds (or reuses, while mkrootfs.sh and the package list are unchanged)
// the arm64 rootfs with the peers' packages.
func buildPeersRootfs(build string) error {
	script, err := os.ReadFile("dist/image/mkrootfs.sh")
	if err != nil {
		return err
	}
	h := sha256.Sum256(append(script, peersPackages...))
	stamp := hex.EncodeToString(h[:8])
	dir := filepath.Join(build, peersRootfs)
	if old, _ := os.ReadFile(dir + ".stamp"); strings.TrimSpace(string(old)) == stamp {
		if _, err := os.Stat(filepath.Join(dir, "sbin/init")); err == nil {
			fmt.Fprintln(os.Stderr, "bench-peers: "+peersRootfs+" reused")
			return nil
		}
	}
	os.Remove(dir + ".stamp")
	fmt.Fprintln(os.Stderr, "bench-peers: building "+peersRootfs+" (mkrootfs.sh with the peers' packages, a few minutes)")
	cmd := exec.Command("./dist/image/mkrootfs.sh", "arm64", dir)
	cmd.Env = append(os.Environ(), "EXTRA_PACKAGES="+peersPackages, "KEEP_MODULES=fs/squashfs")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkrootfs.sh for %s: %v\n%s", peersRootfs, err, tail(string(out), 3000))
	}
	return os.WriteFile(dir+".stamp", []byte(stamp+"\n"), 0o644)
}
