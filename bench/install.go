package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// install: 4 binaries through check --once (full and metadata) vs curl | tar xz + sha256sum
// + sync, vs a plain streaming loop, vs the disk's own fsync'd rate.
func (b *bench) install() {
	size := int64(64 << 20)
	if b.quick {
		size = 4 << 20
	}
	dir, pub := b.catalog("install", map[string]int64{"os_armv8": size, "scoreboard": size, "videoStreamer": size, "modemFW": size})
	s := b.serve(dir, testserver.Options{})
	defer s.stop()
	total := 4 * size
	const runs = 3
	full, meta, base, loop, disk := []time.Duration{}, []time.Duration{}, []time.Duration{}, []time.Duration{}, []time.Duration{}
	warm(canonicalURL(s, "fullpayload"))
	for i := 0; i < runs; i++ {
		cfg, state := b.config(s, pub, "full", "install-full")
		full = append(full, b.agent("--config", cfg, "check", "--once").wall)
		os.RemoveAll(state)
		cfg, state = b.config(s, pub, "metadata", "install-meta")
		meta = append(meta, b.agent("--config", cfg, "check", "--once").wall)
		os.RemoveAll(state)

		out := filepath.Join(b.dir, "baseline")
		os.RemoveAll(out)
		must(os.MkdirAll(out, 0o755))
		p := b.run("sh", "-c", fmt.Sprintf("cd %s && curl -s '%s' | tar xz && sha256sum * >/dev/null && sync", out, canonicalURL(s, "fullpayload")))
		if p.err != nil {
			fail("baseline: %v %s", p.err, p.out)
		}
		base = append(base, p.wall)
		os.RemoveAll(out)
		must(os.MkdirAll(out, 0o755))
		p = b.run(filepath.Join(b.bin, "streamloop"), canonicalURL(s, "fullpayload"), out)
		if p.err != nil {
			fail("streamloop: %v %s", p.err, p.out)
		}
		loop = append(loop, p.wall)
		os.RemoveAll(out)
		// The same random bytes (zeros could be compressed or skipped by a virtual disk).
		p = b.run("sh", "-c", fmt.Sprintf("cat %s/blobs/* | dd of=%s bs=1M iflag=fullblock conv=fsync", dir, filepath.Join(b.dir, "dd.img")))
		if p.err != nil {
			fail("dd: %v %s", p.err, p.out)
		}
		disk = append(disk, p.wall)
		os.Remove(filepath.Join(b.dir, "dd.img"))
	}
	mf, mm, mb, ml, md := median(full), median(meta), median(base), median(loop), median(disk)
	rate := func(d time.Duration) string { return fmt.Sprintf("%.0f MiB/s", float64(total)/(1<<20)/d.Seconds()) }
	what := fmt.Sprintf("install 4 × %s, full payload (median of %d)", mib(size), runs)
	b.add(row{what, fmt.Sprintf("%v (%s)", mf.Round(time.Millisecond), rate(mf)), fmt.Sprintf("curl | tar xz + sha256sum + sync: %v", mb.Round(time.Millisecond)),
		fmt.Sprintf("%.2f×", mf.Seconds()/mb.Seconds()), "≤ 0.70× baseline", verdict(mf.Seconds()/mb.Seconds() <= 0.7)})
	b.add(row{"install, full payload vs plain streaming loop", mf.Round(time.Millisecond).String(), fmt.Sprintf("streamloop: %v (%.2f× curl baseline)", ml.Round(time.Millisecond), ml.Seconds()/mb.Seconds()),
		fmt.Sprintf("%.2f×", mf.Seconds()/ml.Seconds()), "room for verification, not waste", "info"})
	b.add(row{"install, full payload vs disk", rate(mf), fmt.Sprintf("cat | dd conv=fsync of the same bytes: %s", rate(md)),
		fmt.Sprintf("%.2f×", md.Seconds()/mf.Seconds()), "≥ 0.80× disk rate", verdict(md.Seconds()/mf.Seconds() >= 0.8)})
	b.add(row{fmt.Sprintf("install 4 × %s, metadata mode", mib(size)), fmt.Sprintf("%v (%s)", mm.Round(time.Millisecond), rate(mm)), fmt.Sprintf("curl | tar xz + sha256sum + sync: %v", mb.Round(time.Millisecond)),
		fmt.Sprintf("%.2f×", mm.Seconds()/mb.Seconds()), "≤ 0.70× baseline", verdict(mm.Seconds()/mb.Seconds() <= 0.7)})
}

// noChange: a 304 check costs the same with 1 MiB or 1 GiB installed (no re-hashing). Both
// devices are installed first, then their checks alternate so drift hits both alike.
func (b *bench) noChange() {
	big := int64(1 << 30)
	if b.quick {
		big = 32 << 20
	}
	type dev struct {
		cfg, state, dir string
		s               *server
		times           []time.Duration
	}
	devs := map[string]*dev{}
	for _, c := range []struct {
		name string
		size int64
	}{{"small", 1 << 20}, {"big", big}} {
		dir, pub := b.catalog("nochange-"+c.name, map[string]int64{"os_armv8": c.size})
		s := b.serve(dir, testserver.Options{})
		cfg, state := b.config(s, pub, "full", "nochange-"+c.name)
		b.agent("--config", cfg, "check", "--once")
		devs[c.name] = &dev{cfg: cfg, state: state, dir: dir, s: s}
	}
	b.run("sync")
	for i := 0; i < 21; i++ {
		for _, name := range []string{"small", "big"} {
			d := devs[name]
			p := b.agent("--config", d.cfg, "check", "--once")
			if !strings.Contains(p.out, "up-to-date") {
				fail("no-change check was not up to date: %s", p.out)
			}
			d.times = append(d.times, p.wall)
		}
	}
	small, bigT := median(devs["small"].times), median(devs["big"].times)
	for _, d := range devs {
		d.s.stop()
		os.RemoveAll(d.state)
		os.RemoveAll(d.dir)
	}
	r := bigT.Seconds() / small.Seconds()
	b.add(row{fmt.Sprintf("up-to-date check (304), %s installed vs 1 MiB (median of 21, alternating)", mib(big)), bigT.Round(100 * time.Microsecond).String(),
		"1 MiB installed: " + small.Round(100*time.Microsecond).String(), fmt.Sprintf("%.2f×", r), "within 1.5×", verdict(r <= 1.5 && r >= 1/1.5)})
}

// memory: peak RSS of check --once installing 1 GiB (and of the testserver serving it), and
// of the idle daemon, against a plain streaming loop and the Go runtime's floor.
func (b *bench) memory() {
	size := int64(1 << 30)
	if b.quick {
		size = 64 << 20
	}
	dir, pub := b.catalog("memory", map[string]int64{"os_armv8": size})
	ts := exec.Command(filepath.Join(b.bin, "ota-testserver"), "serve", "--listen", "127.0.0.1:0", "--catalog", dir)
	outR, outW, _ := os.Pipe()
	ts.Stdout = outW
	must(ts.Start())
	buf := make([]byte, 4096)
	n, _ := outR.Read(buf)
	base := strings.Fields(string(buf[:n]))[1]
	base = strings.TrimSuffix(base, "/package")
	s := &server{base: base, cat: &testserver.Catalog{Bucket: "bench-bucket"}}
	cfg, state := b.config(s, pub, "full", "memory")
	p := b.agent("--config", cfg, "check", "--once")
	tsHWM := vmHWM(ts.Process.Pid)
	out := filepath.Join(b.dir, "loop-mem")
	must(os.MkdirAll(out, 0o755))
	loop := b.run(filepath.Join(b.bin, "streamloop"), canonicalURL(s, "fullpayload"), out)
	os.RemoveAll(out)
	b.add(row{fmt.Sprintf("peak RSS, check --once installing %s", mib(size)), fmt.Sprintf("%.1f MiB", float64(p.maxKB)/1024),
		fmt.Sprintf("plain streaming loop: %.1f MiB", float64(loop.maxKB)/1024), fmt.Sprintf("%.2f×", float64(p.maxKB)/float64(loop.maxKB)), "≤ 24 MiB", verdict(p.maxKB <= 24*1024)})
	b.add(row{fmt.Sprintf("peak RSS, ota-testserver serving %s through the edge", mib(size)), fmt.Sprintf("%.1f MiB", float64(tsHWM)/1024), "payload size: " + mib(size),
		fmt.Sprintf("%.3f×", float64(tsHWM)*1024/float64(size)), "≤ 64 MiB whatever the payload", verdict(tsHWM <= 64*1024)})
	// The idle daemon, after its first (304) check.
	d := exec.Command(filepath.Join(b.bin, "ota-agent"), "--config", cfg, "run")
	must(d.Start())
	time.Sleep(3 * time.Second)
	idle := vmHWM(d.Process.Pid)
	d.Process.Signal(syscall.SIGTERM)
	d.Wait()
	b.add(row{"peak RSS, ota-agent run idle after a 304", fmt.Sprintf("%.1f MiB", float64(idle)/1024), fmt.Sprintf("plain streaming loop: %.1f MiB", float64(loop.maxKB)/1024),
		fmt.Sprintf("%.2f×", float64(idle)/float64(loop.maxKB)), "≤ 12 MiB", verdict(idle <= 12*1024)})
	ts.Process.Signal(syscall.SIGTERM)
	ts.Wait()
	os.RemoveAll(state)
	os.RemoveAll(dir)
}

// resume: a metadata-mode download cut at 90% and restarted fetches little again.
func (b *bench) resume() {
	size := int64(256 << 20)
	if b.quick {
		size = 16 << 20
	}
	dir, pub := b.catalog("resume", map[string]int64{"os_armv8": size})
	s := b.serve(dir, testserver.Options{})
	defer s.stop()
	cfg, state := b.config(s, pub, "metadata", "resume")
	s.srv.SetFaults(testserver.Faults{CloseAfter: size * 9 / 10, PathPrefix: "/firmware/"})
	if p := b.run(filepath.Join(b.bin, "ota-agent"), "--config", cfg, "check", "--once"); p.err == nil {
		fail("the cut download succeeded")
	}
	s.srv.SetFaults(testserver.Faults{})
	fi, err := os.Stat(filepath.Join(state, "downloads", "os_armv8_1.0.0"))
	must(err)
	have := fi.Size()
	before := s.srv.Stats().BytesByPath["/firmware"]
	b.agent("--config", cfg, "check", "--once")
	fetched := s.srv.Stats().BytesByPath["/firmware"] - before
	again := max(fetched-(size-have), 0)
	b.add(row{fmt.Sprintf("resume: %s metadata download cut at 90%%, restarted", mib(size)),
		fmt.Sprintf("%d bytes fetched twice (%s kept, %s fetched after the restart)", again, mib(have), mib(fetched)),
		"the file: " + mib(size), fmt.Sprintf("%.4f%%", 100*float64(again)/float64(size)), "≤ 1% of the file", verdict(again <= size/100)})
	os.RemoveAll(state)
}

// netcap: under net.max_rate, a transfer of ~10 s runs at the cap (within ±15%).
func (b *bench) netcap() {
	capRate, size := int64(256<<10), int64(2560<<10) // 10 s at the cap
	if b.quick {
		size = 512 << 10
	}
	dir, pub := b.catalog("netcap", map[string]int64{"os_armv8": size})
	s := b.serve(dir, testserver.Options{})
	defer s.stop()
	cfg, state := b.config(s, pub, "metadata", "netcap")
	raw, err := os.ReadFile(cfg)
	must(err)
	must(os.WriteFile(cfg, append(raw, []byte("net:\n  max_rate: 256KiB/s\n")...), 0o644))
	before := s.srv.Stats().BytesByPath["/firmware"]
	p := b.run(filepath.Join(b.bin, "ota-agent"), "--config", cfg, "check", "--once")
	must(p.err)
	got := s.srv.Stats().BytesByPath["/firmware"] - before
	rate := float64(got) / p.wall.Seconds()
	ratio := rate / float64(capRate)
	b.add(row{fmt.Sprintf("net.max_rate 256 KiB/s, one %s download", mib(size)),
		fmt.Sprintf("%.0f KiB/s (%s in %v)", rate/1024, mib(got), p.wall.Round(10*time.Millisecond)),
		"the cap: 256 KiB/s", fmt.Sprintf("%.2f×", ratio), "within ±15% of the cap", verdict(ratio >= 0.85 && ratio <= 1.15)})
	os.RemoveAll(state)
}
