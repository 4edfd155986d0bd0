package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// The peers bench (make bench-peers, bench/peers.md): ota-agent beside Mender, SWUpdate and
// RAUC, the Debian packages of each, doing the same jobs on this machine in one run.

var peerAgents = []string{"ota-agent", "Mender", "SWUpdate", "RAUC"}

// peerVal is one agent's figure for one measure (lower is better).
type peerVal struct {
	agent, mode string
	v           float64
}

// peerLine is one row of bench/peers.md.
type peerLine struct {
	measure string
	cells   map[string]string
	ours    float64 // the best ota-agent figure
	best    float64 // the best peer's (0: no ratio)
	peer    string  // which peer and mode that was
}

type peerTable struct {
	lines []peerLine
	notes []string
}

// figures adds a row from numbers: each agent's modes in its cell, the ratio of the best
// ota-agent figure to the best peer's.
func (t *peerTable) figures(measure string, vals []peerVal, show func(float64) string, na map[string]string) {
	l := peerLine{measure: measure, cells: map[string]string{}}
	for _, a := range peerAgents {
		var parts []string
		for _, v := range vals {
			if v.agent != a {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s (%s)", show(v.v), v.mode))
			if a == "ota-agent" && (l.ours == 0 || v.v < l.ours) {
				l.ours = v.v
			}
			if a != "ota-agent" && (l.peer == "" || v.v < l.best) {
				l.best, l.peer = v.v, a+" "+v.mode
			}
		}
		l.cells[a] = strings.Join(parts, "<br>")
		if len(parts) == 0 {
			l.cells[a] = na[a]
		}
	}
	t.add(l)
}

func (t *peerTable) add(l peerLine) {
	t.lines = append(t.lines, l)
	fmt.Fprintf(os.Stderr, "bench-peers: %s: %v\n", l.measure, l.cells)
}

func (l peerLine) ratio() (string, string) {
	switch {
	case l.peer == "":
		return "—", "—"
	case l.best == 0 && l.ours == 0:
		return "1.00×", "even"
	case l.best == 0:
		return "∞", "**behind**"
	}
	r := l.ours / l.best
	if r > 0.995 && r < 1.005 {
		return fmt.Sprintf("%.2f×", r), "even"
	}
	if r < 1 {
		return fmt.Sprintf("%.2f×", r), "ahead"
	}
	return fmt.Sprintf("%.2f×", r), fmt.Sprintf("**behind** %s by %.0f%%", l.peer, 100*(r-1))
}

func (t *peerTable) markdown(took time.Duration) string {
	var s strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&s, "# ota-agent beside Mender, SWUpdate and RAUC\n\n`make bench-peers` on %s: %s, %d cores, %s; %s; took %v.\n", host, cpuModel(), runtime.NumCPU(), kernel(), time.Now().UTC().Format("2006-01-02"), took.Round(time.Second))
	fmt.Fprintf(&s, "Versions: ota-agent %s (%s), mender-client %s with mender-artifact %s, swupdate %s, rauc %s (Debian packages).\n",
		sh("git describe --tags --always --dirty 2>/dev/null || echo dev"), runtime.Version(), debVersion("mender-client"), debVersion("mender-artifact"), debVersion("swupdate"), debVersion("rauc"))
	s.WriteString("Everything on loopback; every agent verifies a signature where it has one. Lower is better; the ratio is the best ota-agent mode over the best peer mode.\n\n")
	s.WriteString("| measure | ota-agent | Mender | SWUpdate | RAUC | ours / best peer | verdict |\n|---|---|---|---|---|---|---|\n")
	cell := strings.NewReplacer("|", `\|`).Replace
	for _, l := range t.lines {
		r, v := l.ratio()
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(l.measure), cell(l.cells["ota-agent"]), cell(l.cells["Mender"]), cell(l.cells["SWUpdate"]), cell(l.cells["RAUC"]), r, v)
	}
	if len(t.notes) > 0 {
		s.WriteString("\n## Notes\n\n")
		for _, n := range t.notes {
			s.WriteString("* " + n + "\n")
		}
	}
	return s.String()
}

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return "unknown CPU"
}

func kernel() string {
	out, _ := exec.Command("uname", "-sr").Output()
	return strings.TrimSpace(string(out))
}

func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "(not installed)"
	}
	return string(out)
}

// appsJobs: four apps installed on a fresh device, then one of them replaced, then rebuilt;
// every variant timed (median of runs), then once more under strace for the durability row.
func (b *bench) appsJobs(t *peerTable, w *peerWorld) {
	vs := []variant{w.ours("full"), w.ours("metadata"), w.mender("directory"), w.mender("single-file"), w.swupdate()}
	runs := 3
	if b.quick {
		runs = 1
	}
	timed, durable := map[int]map[int][]peerRun{}, map[int][]string{}
	for step := range appSteps {
		timed[step], durable[step] = map[int][]peerRun{}, make([]string, len(vs))
	}
	for i, v := range vs {
		for r := 0; r < runs; r++ {
			v.fresh()
			for step := range appSteps {
				v.ready(step)
				x := &runner{b: b}
				n0 := v.net()
				v.step(x, step)
				x.r.net = v.net() - n0
				timed[step][i] = append(timed[step][i], x.r)
			}
		}
		v.fresh()
		for step := range appSteps {
			v.ready(step)
			x := &runner{b: b, traced: true}
			v.step(x, step)
			durable[step][i] = x.judge(v.files(step), v.sw)
		}
		fmt.Fprintf(os.Stderr, "bench-peers: %s %s done\n", v.agent, v.mode)
	}
	na := map[string]string{"RAUC": "n/a: image-based, no slot type for loose files"}
	for step, job := range appSteps {
		if step == 0 {
			job = fmt.Sprintf(job, mib(w.size))
		}
		med := func(f func(peerRun) float64) []peerVal {
			var out []peerVal
			for i, v := range vs {
				var xs []float64
				for _, r := range timed[step][i] {
					xs = append(xs, f(r))
				}
				sort.Float64s(xs)
				out = append(out, peerVal{v.agent, v.mode, xs[len(xs)/2]})
			}
			return out
		}
		t.figures(job+": wall time", med(func(r peerRun) float64 { return r.wall.Seconds() }), secs, na)
		t.figures(job+": CPU time (user+sys)", med(func(r peerRun) float64 { return r.cpu.Seconds() }), secs, na)
		t.figures(job+": peak RSS (largest process)", med(func(r peerRun) float64 { return float64(r.rssKB) / 1024 }), func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }, na)
		t.figures(job+": bytes from the network", med(func(r peerRun) float64 { return float64(r.net) }), func(v float64) string { return fmt.Sprintf("%.2f MiB", v/(1<<20)) }, na)
		l := peerLine{measure: job + ": every byte fsync'd before visible (strace)", cells: map[string]string{"RAUC": na["RAUC"]}}
		for i, v := range vs {
			l.cells[v.agent] = strings.TrimPrefix(l.cells[v.agent]+"<br>", "<br>") + fmt.Sprintf("%s (%s)", durable[step][i], v.mode)
		}
		t.add(l)
	}
	t.notes = append(t.notes,
		"Apps: the payloads are random bytes. Replaced by new random bytes, no agent can send less than the file; rebuilt with an eighth changed (a new build of a binary), ota-agent's metadata mode fetches the patch its publisher wrote (`ota-release delta`, zstd against the previous version, from the same plain CDN) and rebuilds the file, verified like any other. The ratio column takes each row's best ota-agent mode, so read the metadata cells of that job too: one mode does not win every row there. The patch saves 7/8 of the bytes but costs CPU (zstd decoding, the old file read again). Memory: a whole-file patch holds the old file and its zstd window, ~2× the file (139 MiB for this 64 MiB app when `delta.max_source` was 64 MiB); since 2026-12-05 the default is 4 MiB, so a file this large takes the block patch `ota-release delta` writes beside the whole-file one (2 MiB blocks, each with the old file around it as dictionary: bounded memory, a few more bytes). On loopback bytes cost nothing; on a cellular gateway they are what costs. Mender 3.4's open-source client has no delta (mender-binary-delta is commercial and for root filesystems) and SWUpdate's delta handler (zchunk) updates images, not the files handler: both ship the whole file. ota-agent asks the server with the device's MD5s and gets only what changed; for Mender and SWUpdate the operator builds an artifact of what changed (the directory module carries the whole tree every time). Mender runs each single-file artifact as its own `install` + `commit`.",
		"Apps CPU: with trust keys (every run here) ota-agent hashes the received bytes with SHA-256 only and takes the MD5 it sends back as the ETag from the signed statement, which binds it to the SHA-256 it checked. Until this change it hashed MD5 as well (~330 ms of CPU per 256 MiB here) and was behind SWUpdate on CPU (1.20× / 1.58×). Metadata mode hashes a download from byte 0 as grab reads it off the network; only a download resumed across a restart is read once more to be hashed (its prefix is on disk only). What it still does that the peers do not: gunzip the full payload. Without trust keys both hashes run.",
		"Durability (strace, internal/strace.Judge): a file counts as durable when its bytes were fsync'd before the name a reader uses pointed at them. Mender's directory module untars over the destination and never fsyncs; SWUpdate's files handler truncates the destination and writes it in place (fsync after the last byte), so a power cut or a reader in between sees a partial file; Mender's single-file module writes a temporary file, fsyncs and renames it.",
	)
}

func (v variant) ready(step int) {
	if v.prepare != nil {
		v.prepare(step)
	}
}

func secs(v float64) string { return fmt.Sprintf("%.2f s", v) }

// peers runs the jobs (all, or the comma-separated few named).
func (b *bench) peers(only string) *peerTable {
	for _, tool := range []string{"mender", "mender-artifact", "swupdate", "rauc", "strace", "/usr/bin/time", "cpio", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			fail("%s is missing: make bench-peers installs the peers (bench/peers.sh) — run that as root", tool)
		}
	}
	t := &peerTable{}
	size := int64(64 << 20)
	if b.quick {
		size = 4 << 20
	}
	w := b.newPeerWorld(size)
	defer w.s.stop()
	for _, j := range []struct {
		name string
		fn   func(*peerTable, *peerWorld)
	}{{"apps", b.appsJobs}, {"resume", b.resumeJob}, {"poll", b.pollJob}, {"footprint", b.footprintJob}, {"os", b.osImageJob}} {
		if only != "" && !strings.Contains(","+only+",", ","+j.name+",") {
			continue
		}
		t0 := time.Now()
		j.fn(t, w)
		fmt.Fprintf(os.Stderr, "bench-peers: %s done in %v\n", j.name, time.Since(t0).Round(time.Second))
	}
	return t
}
