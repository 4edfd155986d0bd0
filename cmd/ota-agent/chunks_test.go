package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// chunkWorld: metadata mode, 1 MiB apps, patches only up to 1 KiB (so the chunk index is
// what is tried), the sample installed; scoreboard 1.5.0 is the installed 1.0.0 with two
// 10 KiB regions changed, indexed with `ota-release index`.
func chunkWorld(t *testing.T) (*world, []byte) {
	w := newWorld(t, 1<<20, "#metadata\ndelta:\n  max_source: 1KiB\n")
	w.mustAgent("check", "--once")
	nw := append([]byte(nil), w.fileOf(w.row("scoreboard", "prod").Key())...)
	copy(nw[200<<10:], randomBytes(10<<10, 41))
	copy(nw[700<<10:], randomBytes(10<<10, 42))
	w.release("scoreboard", "1.5.0", nw, 50)
	if out, err := otaRelease(t, "index", filepath.Join(w.cat.Dir(), "blobs", "scoreboard_1.5.0")); err != nil {
		t.Fatalf("ota-release index: %v %s", err, out)
	}
	return w, nw
}

// The device fetches only the chunks it lacks, with Range requests; a chunk of its own copy
// found damaged is fetched too.
func TestChunkInstall(t *testing.T) {
	for _, damage := range []bool{false, true} {
		w, nw := chunkWorld(t)
		if damage {
			// A first attempt, cut, leaves the chunk list of the installed copy cached; then
			// the copy is damaged on disk.
			w.srv.SetFaults(testserver.Faults{PathPrefix: "/firmware/scoreboard_1.5.0", CloseAfter: 30 << 10})
			w.agent(nil, "check", "--once")
			w.srv.SetFaults(testserver.Faults{})
			f, _ := os.OpenFile(filepath.Join(w.state, "slots", "a", "scoreboard"), os.O_WRONLY, 0)
			f.WriteAt([]byte("rot"), 500<<10)
			f.Close()
		}
		if r := w.mustAgent("check", "--once", "--dry-run"); !strings.Contains(r.stdout, "by chunk index") {
			t.Fatalf("dry run:\n%s", r.stdout)
		}
		fw := w.srv.Stats().BytesByPath["/firmware"]
		r, res := w.checkJSON()
		sb := res.Apps["scoreboard"]
		if r.code != 0 || sb.Delivery != "chunks" || sb.Downloaded > int64(len(nw))/2 {
			t.Fatalf("damaged %v: exit %d, scoreboard %+v\n%s", damage, r.code, sb, r.stderr)
		}
		if got := w.srv.Stats().BytesByPath["/firmware"] - fw; got > int64(len(nw))/2 {
			t.Fatalf("%d bytes of ranges for a %d-byte file with 20 KiB changed", got, len(nw))
		}
		if damage != strings.Contains(r.stderr, "damaged; fetching it") {
			t.Fatalf("damaged %v, log:\n%s", damage, r.stderr)
		}
		w.mustAgent("verify")
	}
}

// A lying index, a server that ignores Range and one that is cut in the middle each end in
// a correct install: the first two fetch the whole file, the cut one goes on from where it
// stopped.
func TestChunkFallbacks(t *testing.T) {
	t.Run("lying index", func(t *testing.T) {
		w, _ := chunkWorld(t)
		p := filepath.Join(w.cat.Dir(), "blobs", "scoreboard_1.5.0.chunks")
		raw, _ := os.ReadFile(p)
		s := string(raw)
		// The chunk at 700 KiB changed: the device must fetch it, and the index lies about it.
		var idx struct {
			Chunks []struct {
				Off int64  `json:"o"`
				Len int64  `json:"n"`
				H   string `json:"h"`
			} `json:"chunks"`
		}
		json.Unmarshal(raw, &idx)
		for _, c := range idx.Chunks {
			if c.Off <= 700<<10 && 700<<10 < c.Off+c.Len {
				s = strings.Replace(s, c.H, strings.Repeat("0", 64), 1)
			}
		}
		os.WriteFile(p, []byte(s), 0o644)
		r, res := w.checkJSON()
		if sb := res.Apps["scoreboard"]; r.code != 0 || sb.Delivery != "full" || !strings.Contains(r.stderr, "does not hash as the index says") {
			t.Fatalf("exit %d, scoreboard %+v\n%s", r.code, sb, r.stderr)
		}
		w.mustAgent("verify")
	})
	t.Run("server ignores Range", func(t *testing.T) {
		w, _ := chunkWorld(t)
		w.srv.SetFaults(testserver.Faults{PathPrefix: "/firmware/scoreboard_1.5.0", IgnoreRange: true})
		r, res := w.checkJSON()
		if sb := res.Apps["scoreboard"]; r.code != 0 || sb.Delivery != "full" || !strings.Contains(r.stderr, "200 OK") {
			t.Fatalf("exit %d, scoreboard %+v\n%s", r.code, sb, r.stderr)
		}
		w.mustAgent("verify")
	})
	t.Run("cut in the middle", func(t *testing.T) {
		w, _ := chunkWorld(t)
		w.srv.SetFaults(testserver.Faults{PathPrefix: "/firmware/scoreboard_1.5.0", CloseAfter: 30 << 10})
		if r := w.agent(nil, "check", "--once"); r.code == 0 {
			t.Fatalf("a cut transfer succeeded:\n%s", r.stderr)
		}
		w.srv.SetFaults(testserver.Faults{})
		r, res := w.checkJSON()
		if sb := res.Apps["scoreboard"]; r.code != 0 || sb.Delivery != "chunks" {
			t.Fatalf("exit %d, scoreboard %+v\n%s", r.code, sb, r.stderr)
		}
		w.mustAgent("verify")
	})
}

// An OS image into its partition, by a block patch (`ota-release delta --blocks`) or by
// chunk index (`ota-release index`): what the device holds comes from the booted partition,
// the image lands whole on the other one.
func TestOSImageDeltas(t *testing.T) {
	if _, err := exec.LookPath("grub-editenv"); err != nil {
		t.Skip("SKIPPED: grub-editenv not installed (apt-get install grub-common)")
	}
	for _, how := range []string{"patch", "chunks"} {
		t.Run(how, func(t *testing.T) { osImageDelta(t, how) })
	}
}

func osImageDelta(t *testing.T, how string) {
	w := newWorld(t, 1<<20, "#metadata\n")
	pa, pb, genv := filepath.Join(w.dir, "pa.img"), filepath.Join(w.dir, "pb.img"), filepath.Join(w.dir, "grubenv")
	os.WriteFile(pa, make([]byte, 2<<20), 0o644)
	os.WriteFile(pb, make([]byte, 2<<20), 0o644)
	bootID := filepath.Join(w.dir, "boot_id")
	os.WriteFile(bootID, []byte("1"), 0o644)
	exec.Command("grub-editenv", genv, "create").Run()
	w.writeConfig("#metadata\nslots:\n  os:\n    backend: partition\n    devices: {a: " + pa + ", b: " + pb + "}\n    bootloader: grub\n    grubenv: " + genv + "\n    boot_id_file: " + bootID + "\n")
	w.mustAgent("check", "--once")
	os.WriteFile(bootID, []byte("2"), 0o644) // rebooted into b
	w.mustAgent("mark-good")
	img := append([]byte(nil), w.fileOf(w.row("os_armv8", "prod").Key())...)
	copy(img[300<<10:], randomBytes(8<<10, 51))
	w.release("os_armv8", "1.2.0", img, 60)
	newFile := filepath.Join(w.cat.Dir(), "blobs", "os_armv8_1.2.0")
	args := []string{"index", newFile}
	if how == "patch" {
		args = []string{"delta", "--blocks", filepath.Join(w.cat.Dir(), "blobs", "os_armv8_1.1.0"), newFile}
	}
	if out, err := otaRelease(t, args...); err != nil {
		t.Fatalf("ota-release %v: %v %s", args, err, out)
	}
	if dry := w.mustAgent("check", "--once", "--dry-run"); !strings.Contains(dry.stdout, map[string]string{"patch": "block patch", "chunks": "by chunk index"}[how]) {
		t.Fatalf("dry run:\n%s", dry.stdout)
	}
	r, res := w.checkJSON()
	if os := res.Apps["os_armv8"]; r.code != 0 || os.Delivery != how || os.Downloaded > int64(len(img))/2 {
		t.Fatalf("exit %d, os_armv8 %+v\n%s", r.code, os, r.stderr)
	}
	got, _ := os.ReadFile(pa)
	if !bytes.Equal(got[:len(img)], img) {
		t.Fatal("partition a does not hold the new image")
	}
	if env, _ := exec.Command("grub-editenv", genv, "list").Output(); !strings.Contains(string(env), "ota_slot=a") {
		t.Fatalf("environment: %s", env)
	}
}

// SIGKILL in the middle of a chunked transfer: the restart keeps every chunk already
// assembled and verified, so no finished range is fetched again (only the index and the
// part of the range that was cut).
func TestChunkKillResumes(t *testing.T) {
	clean, _ := chunkWorld(t)
	_, res := clean.checkJSON()
	need := res.Apps["scoreboard"].Downloaded // index + ranges, uninterrupted
	w, _ := chunkWorld(t)
	prefix := "/firmware/scoreboard_1.5.0"
	w.srv.SetFaults(testserver.Faults{PathPrefix: prefix, RateBPS: 64 << 10})
	cmd := exec.Command(bin, "--config", w.cfg, "check", "--once")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ranges0 := w.srv.Stats().RequestsByPath["/firmware"]
	waitFor(t, "the first range to finish", 30*time.Second, func() bool { return w.srv.Stats().RequestsByPath["/firmware"] > ranges0 })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	first := w.srv.Stats().BytesByPath["/firmware"] + w.srv.Stats().BytesByPath["/delta"]
	w.srv.SetFaults(testserver.Faults{})
	r, res := w.checkJSON()
	sb := res.Apps["scoreboard"]
	if r.code != 0 || sb.Delivery != "chunks" || sb.Downloaded >= need {
		t.Fatalf("after the kill: exit %d, scoreboard %+v (an uninterrupted run fetches %d)\n%s", r.code, sb, need, r.stderr)
	}
	total := w.srv.Stats().BytesByPath["/firmware"] + w.srv.Stats().BytesByPath["/delta"]
	before := clean.srv.Stats().BytesByPath["/firmware"] + clean.srv.Stats().BytesByPath["/delta"] - need // the first install
	// Twice: the index, and what of the second range arrived before the kill (64 KiB/s).
	if twice := (total - before) - need; twice > 32<<10 {
		t.Fatalf("%d bytes fetched twice (first attempt %d, the restart %d, needed %d)", twice, first-before, sb.Downloaded, need)
	}
	w.mustAgent("verify")
}
