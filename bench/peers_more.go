package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// resumeJob: one big file per agent; the server stops sending at 90%, the agent is killed
// there (a reboot, an OOM kill, a restarted service) and started again. The row is the bytes
// fetched twice.
func (b *bench) resumeJob(t *peerTable, w *peerWorld) {
	size := int64(256 << 20)
	if b.quick {
		size = 16 << 20
	}
	cut := size * 9 / 10
	vals := []peerVal{{"ota-agent", "metadata", float64(b.oursResume(size, cut))}}
	big := filepath.Join(w.dir, "big")
	writeRandom(big, size, 77)
	dest := filepath.Join(w.dir, "resume-dest")
	m := w.menderDevice("mender-resume", `"ServerURL": "http://127.0.0.1:9"`)
	art := w.menderArtifact("resume", "single-file", dest, map[string]string{"big": big})
	swu := w.swu("resume", dest, map[string]string{"big": big})
	for _, p := range []struct {
		agent, mode, name string
		fresh             func()
		args              []string
	}{
		{"Mender", "single-file", "mender", m.fresh, m.args("install", w.fs.base+"/"+art)},
		{"SWUpdate", "files", "swupdate", func() {}, []string{"-H", "bench:1.0", "-k", filepath.Join(w.dir, "swu.crt"), "-d", "-u " + w.fs.base + "/" + swu}},
	} {
		p.fresh()
		os.RemoveAll(dest)
		must(os.MkdirAll(dest, 0o755))
		sent0 := w.fs.sent.Load()
		w.fs.arm(sent0 + cut)
		cmd := startGroup(nil, p.name, p.args...)
		select {
		case <-w.fs.stalled:
		case <-time.After(5 * time.Minute):
			fail("%s never reached 90%% of the download", p.agent)
		}
		killTree(cmd)
		w.fs.arm(0)
		if out, err := exec.Command(p.name, p.args...).CombinedOutput(); err != nil {
			fail("%s after the restart: %v\n%s", p.agent, err, tail(string(out), 2000))
		}
		if got := fileSize(filepath.Join(dest, "big")); got != size {
			fail("%s installed %d of %d bytes after the restart", p.agent, got, size)
		}
		again := w.fs.sent.Load() - sent0 - size
		vals = append(vals, peerVal{p.agent, p.mode, float64(max(again, 0))})
	}
	na := map[string]string{"RAUC": "n/a: RAUC 1.8 reads HTTP only by streaming a verity bundle through nbd (no download to resume)"}
	t.figures(fmt.Sprintf("resume: %s download cut at 90%%, agent killed and restarted: bytes fetched twice", mib(size)), vals,
		func(v float64) string { return fmt.Sprintf("%.1f MiB (%.1f%%)", v/(1<<20), 100*v/float64(size)) }, na)
	t.notes = append(t.notes, "Resume: Mender and SWUpdate retry a broken connection with a Range request inside one run (SWUpdate's -r), but keep nothing across a restart; ota-agent's metadata mode keeps the verified prefix in state_dir/downloads with its offset in agent.db, and its full mode starts again (a gzip stream has no resumable state).")
}

// oursResume is the same cut for ota-agent: its metadata mode keeps a verified prefix.
func (b *bench) oursResume(size, cut int64) int64 {
	dir, pub := b.catalog("peers-resume", map[string]int64{"big": size})
	s := b.serve(dir, testserver.Options{})
	defer s.stop()
	cfg, state := b.config(s, pub, "metadata", "peers-resume")
	defer os.RemoveAll(state)
	s.srv.SetFaults(testserver.Faults{StallAfter: cut, PathPrefix: "/firmware/"})
	cmd := startGroup(nil, filepath.Join(b.bin, "ota-agent"), "--config", cfg, "check", "--once")
	part := filepath.Join(state, "downloads", "big_1.0.0")
	deadline := time.Now().Add(5 * time.Minute)
	for sizeNow(part) < cut-(256<<10) {
		if time.Now().After(deadline) {
			fail("ota-agent never reached 90%% of the download")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // what was sent is written
	killTree(cmd)
	s.srv.SetFaults(testserver.Faults{})
	b.agent("--config", cfg, "check", "--once")
	time.Sleep(500 * time.Millisecond) // the stalled answer has ended and been counted
	return max(s.srv.Stats().BytesByPath["/firmware"]-size, 0)
}

// sizeNow is a file's size, 0 while it does not exist.
func sizeNow(p string) int64 {
	if fi, err := os.Stat(p); err == nil {
		return fi.Size()
	}
	return 0
}
