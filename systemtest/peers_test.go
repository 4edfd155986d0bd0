//go:build system

package systemtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/testenv"
)

// TestPeersOS is make bench-peers' OS-image row (never part of make test-system): inside the
// booted arm64 board, each agent writes the same 256 MiB root filesystem image to the inactive
// partition and asks U-Boot to try it — ota-agent's partition mode, Mender's rootfs-image,
// RAUC's bundle, SWUpdate's raw handler with a bootenv section — one after the other, every
// artifact signed. The guest helper measures each run (wall, CPU, peak RSS, when the
// environment first asked to try the new slot); the host counts the bytes it served and reads
// the partition back. The figures go to the JSON file OTA_PEERS_OS_OUT names.
func TestPeersOS(t *testing.T) {
	out := os.Getenv("OTA_PEERS_OS_OUT")
	if out == "" {
		t.Skip("SKIPPED: OTA_PEERS_OS_OUT is not set (make bench-peers runs this test)")
	}
	r := newRigOn(t, rigSpec{rootfs: "rootfs-arm64-peers", name: "peers", arch: "arm64", loader: "uboot",
		cpu: "armv8", extra: peersOverlay, cpus: 2})
	img, sum := r.peersImage()
	r.peersArtifacts(img, sum)
	if err := r.boot("peers"); err != nil {
		t.Fatal(err)
	}
	r.sh("systemctl stop ota-agent ota-app-sensor; modprobe -a loop squashfs")
	rel, err := filepath.Rel(filepath.Join(r.work, "catalog"), img)
	if err != nil {
		t.Fatal(err)
	}
	r.publish("os_"+r.cpu, "2", rel, false)
	var jobs []peerOSJob
	for _, p := range peerOSJobs {
		if only := os.Getenv("OTA_PEERS_ONLY"); only == "" || strings.Contains(","+only+",", ","+p.agent+",") {
			jobs = append(jobs, p) // OTA_PEERS_ONLY: a quicker run of some agents (their names, comma-separated)
		}
	}
	// The host's noise moves one agent's figures by tens of percent between runs: every
	// agent runs peerRounds times, the agents in turn within each round, and each figure is
	// the median of its rounds. The board settles first (boot-time jobs ended).
	r.sh("systemctl is-system-running --wait >/dev/null 2>&1; sync; sleep 10")
	timed := make([][]testenv.PeerOSRun, len(jobs))
	for round := 1; round <= peerRounds(); round++ {
		for i, p := range jobs {
			row := r.peerTimed(p, sum)
			timed[i] = append(timed[i], row)
			r.logf("round %d: %s (%s): rc %d, wall %.1fs, CPU %.1fs, RSS %d KiB, env at %.1fs, %d bytes, outside the slot %d bytes, written %v",
				round, p.agent, p.mode, row.RC, row.WallS, row.CPUS, row.RSSKB, row.EnvS, row.Net, row.Outside, row.Written)
		}
	}
	var rows []testenv.PeerOSRun
	for i, p := range jobs {
		row := medianRun(timed[i])
		row.Durable = r.peerTraced(p)
		rows = append(rows, row)
		r.logf("%s (%s), median of %d: wall %.1fs, CPU %.1fs, RSS %d KiB, env at %.1fs, outside the slot %d bytes; durable %s",
			p.agent, p.mode, len(timed[i]), row.WallS, row.CPUS, row.RSSKB, row.EnvS, row.Outside, row.Durable)
	}
	raw, _ := json.MarshalIndent(testenv.PeerOSReport{Size: imageSize, Runs: rows, Kernel: field(r.sh("uname -r").Output),
		Versions: field(r.sh("dpkg-query -W -f '${Package} ${Version}\\n' mender-client rauc swupdate").Output)}, "", "  ")
	if err := os.WriteFile(out, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.RC != 0 || !row.Written || row.EnvS < 0 {
			t.Errorf("%s (%s) did not install: rc %d, written %v, env asked at %.1fs\n%s", row.Agent, row.Mode, row.RC, row.Written, row.EnvS, row.Output)
		}
	}
}

const imageSize = 256 << 20

// peerRounds is how many timed runs each agent gets (OTA_PEERS_ROUNDS, default 3).
func peerRounds() int {
	if n, err := strconv.Atoi(os.Getenv("OTA_PEERS_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// peerOSJob is one agent's install: how its environment is prepared, the command the guest
// helper measures, and the environment that asks U-Boot to try slot B.
type peerOSJob struct {
	agent, mode, source string
	local               string // an artifact under /peers/ copied to the data partition first (not timed)
	prepare             string // shell, before the measured command
	service             string // the daemon doing the work (its comm), if not the command
	want                string // k=v,... asking to try the new slot
	cmd                 string
}

// oursOS: ota-agent in a payload mode; each run starts from a device that has not installed
// this release (twice: timed, traced).
func oursOS(mode, source, config string) peerOSJob {
	return peerOSJob{agent: "ota-agent", mode: "partition, " + mode, source: source,
		prepare: "rm -rf /var/lib/ota-agent/*", want: "ota_slot=b,upgrade_available=1",
		cmd: "ota-agent --config /etc/ota-agent/" + config + " check --once"}
}

var peerOSJobs = []peerOSJob{
	oursOS("metadata", "HTTP (its server)", "bench.yaml"),
	oursOS("full", "HTTP (its server: the tar.gz payload)", "bench-full.yaml"),
	{agent: "Mender", mode: "rootfs-image", source: "HTTP (mender install URL)",
		prepare: "rm -f /data/mender/mender-store* && fw_setenv mender_boot_part 2 && fw_setenv mender_boot_part_hex 2",
		want:    "mender_boot_part=3,upgrade_available=1",
		cmd:     "mender --no-syslog install http://10.0.2.100:8080/peers/os.mender"},
	{agent: "SWUpdate", mode: "raw + bootenv", source: "HTTP (swupdate -d -u URL)",
		want: "ota_slot=b,upgrade_available=1",
		cmd:  "swupdate -B uboot -H ota-bench:1.0 -k /etc/swupdate/cms.crt -d '-u http://10.0.2.100:8080/peers/os.swu'"},
	{agent: "RAUC", mode: "bundle (plain)", source: "local file (fetched first, not timed)", local: "os.raucb",
		prepare: "fw_setenv BOOT_ORDER 'A B' && fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_B_LEFT 3 && systemctl restart rauc",
		service: "rauc", want: "BOOT_ORDER=B A",
		cmd: "rauc install /var/lib/ota-agent/os.raucb"},
}

// peerTimed runs one agent's install, measured, and reads slot B back.
func (r *rig) peerTimed(p peerOSJob, sum string) testenv.PeerOSRun {
	r.peerReset(p)
	args := fmt.Sprintf("ota-systest-guest measure -want %q", p.want)
	if p.service != "" {
		args += " -service " + p.service
	}
	sent := r.sent.Load()
	res, err := r.ctl.run(r.vm, args+" -- sh -c "+shellQuote(p.cmd), 20*time.Minute)
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", p.agent, err, tail(r.vm.serial(), 40))
	}
	row := testenv.PeerOSRun{Agent: p.agent, Mode: p.mode, Source: p.source, Net: r.sent.Load() - sent, RC: -1, EnvS: -1}
	if p.local != "" {
		if st, err := os.Stat(filepath.Join(r.peers, p.local)); err == nil {
			row.Net = st.Size() // what the copy before carried
		}
	}
	if err := json.Unmarshal([]byte(lastLine(res.Output)), &row); err != nil {
		row.Output = res.Output
		return row
	}
	if p.local != "" { // the artifact it installs from was written to the data partition first
		row.Outside += row.Net
	}
	if row.EnvS < 0 {
		row.Output += "\nthe environment after the run: " + r.sh("fw_printenv 2>&1 | tr '\\n' ' '").Output
	}
	got := strings.Fields(r.sh(fmt.Sprintf("head -c %d /dev/vda3 | sha256sum", imageSize)).Output)
	row.Written = len(got) > 0 && got[0] == sum
	return row
}

// peerTraced runs one agent's install under strace for the durability judgement (its time
// is not the row's).
func (r *rig) peerTraced(p peerOSJob) string {
	r.peerReset(p)
	res, err := r.ctl.run(r.vm, traceCmd(p), 30*time.Minute)
	if err != nil {
		r.t.Fatalf("%s under strace: %v\n%s", p.agent, err, tail(r.vm.serial(), 40))
	}
	os.WriteFile(filepath.Join(r.work, "trace-"+p.agent+".txt"), []byte(res.Output), 0o644)
	return judgeOS(res.Output, "/dev/vda3")
}

// medianRun is one agent's row from its rounds: the median of each figure, the worst exit
// code, written only if every round wrote the image, the last round's output.
func medianRun(runs []testenv.PeerOSRun) testenv.PeerOSRun {
	row := runs[len(runs)-1]
	med := func(f func(testenv.PeerOSRun) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	row.WallS = med(func(r testenv.PeerOSRun) float64 { return r.WallS })
	row.CPUS = med(func(r testenv.PeerOSRun) float64 { return r.CPUS })
	row.EnvS = med(func(r testenv.PeerOSRun) float64 { return r.EnvS })
	row.RSSKB = int64(med(func(r testenv.PeerOSRun) float64 { return float64(r.RSSKB) }))
	row.Net = int64(med(func(r testenv.PeerOSRun) float64 { return float64(r.Net) }))
	row.Outside = int64(med(func(r testenv.PeerOSRun) float64 { return float64(r.Outside) }))
	for _, r := range runs {
		row.Written = row.Written && r.Written
		if r.RC != 0 {
			row.RC, row.Output = r.RC, r.Output
		}
		if r.EnvS < 0 {
			row.EnvS = -1
		}
	}
	return row
}

// peerReset wipes slot B's first MiBs, sets the environment back to "running A" and runs the
// agent's own preparation, then drops the page cache.
func (r *rig) peerReset(p peerOSJob) {
	reset := "dd if=/dev/zero of=/dev/vda3 bs=1M count=4 conv=fsync status=none && " +
		"fw_setenv ota_slot a && fw_setenv upgrade_available 0 && fw_setenv bootcount 0"
	if p.local != "" { // copied once: the timed and the traced run use the same file
		f := "/var/lib/ota-agent/" + p.local // the data partition: room for it
		reset += fmt.Sprintf(" && { [ -e %s ] || ota-systest-guest fetch http://10.0.2.100:8080/peers/%s %s; }", f, p.local, f)
	}
	if p.prepare != "" {
		reset += " && " + p.prepare
	}
	if res := r.sh(reset + " && sync && echo 3 > /proc/sys/vm/drop_caches"); res.RC != 0 {
		r.t.Fatalf("preparing %s: exit %d: %s", p.agent, res.RC, res.Output)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// peersImage is the OS release every agent installs: a 256 MiB ext4 filesystem holding the
// OS version and random bytes (incompressible, so no agent's compression changes the job).
func (r *rig) peersImage() (path, sum string) {
	tree := filepath.Join(r.work, "peers-tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/ota-os-version"), []byte("2\n"), 0o644)
	f, err := os.Create(filepath.Join(tree, "payload"))
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := io.CopyN(f, randReader{r}, 228<<20); err != nil {
		r.t.Fatal(err)
	}
	f.Close()
	path = filepath.Join(r.work, "catalog", "blobs", "os.ext4")
	if err := run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", tree, path, "256M"); err != nil {
		r.t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	h := sha256.Sum256(raw)
	return path, hex.EncodeToString(h[:])
}

type randReader struct{ r *rig }

func (x randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(x.r.rng.Uint32())
	}
	return len(p), nil
}
