package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// TestOSStreamSurvivesKills streams a 16 MiB OS image straight into a file-backed partition
// and SIGKILLs the agent at random offsets, 20 times in each payload mode: in metadata mode
// each restart resumes from the last checkpoint with Range + If-Range; in full mode the
// first kill lands in the payload's gzip stream, which cannot resume, so the restart asks in
// metadata mode once and resumes the image from its checkpoint at the firmware CDN
// (delivery.PayloadResume), and the later kills land there. After every kill: the booted
// partition is untouched and the environment never asks to try a slot that does not hold
// the whole verified image. Then an unbroken run installs it; each mode fetched at most
// about one checkpoint interval again per kill (the figure is printed).
func TestOSStreamSurvivesKills(t *testing.T) {
	if _, err := exec.LookPath("grub-editenv"); err != nil {
		t.Skip("SKIPPED: grub-editenv not installed (apt-get install grub-common)")
	}
	for _, mode := range []struct {
		name  string
		kills int
	}{{"metadata", 20}, {"full", 20}} {
		t.Run(mode.name, func(t *testing.T) { osStreamKills(t, mode.name, mode.kills) })
	}
}

func osStreamKills(t *testing.T, mode string, kills int) {
	const size, every = 16 << 20, 128 << 10
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 27))
	w := newWorld(t, 8192, "#"+mode)
	pa, pb, genv := filepath.Join(w.dir, "pa.img"), filepath.Join(w.dir, "pb.img"), filepath.Join(w.dir, "grubenv")
	os.WriteFile(pa, make([]byte, size+(1<<20)), 0o644)
	os.WriteFile(pb, make([]byte, size+(1<<20)), 0o644)
	os.WriteFile(filepath.Join(w.dir, "boot_id"), []byte("1"), 0o644)
	exec.Command("grub-editenv", genv, "create").Run()
	w.writeConfig("#" + mode + "\nslots:\n  os:\n    backend: partition\n    devices: {a: " + pa + ", b: " + pb + "}\n    bootloader: grub\n    grubenv: " + genv +
		"\n    boot_id_file: " + filepath.Join(w.dir, "boot_id") + "\n    checkpoint: " + strconv.Itoa(every) + "\n")
	img := randomBytes(size, 77)
	w.release("os_armv8", "1.2.0", img, 60)
	prefix := "/firmware/os_armv8_1.2.0"
	if mode == "full" {
		prefix = "" // the payload is the check's answer
	}
	fetched := func() int64 { st := w.srv.Stats(); return st.BytesByPath["/firmware"] + st.BytesByPath["/package"] }
	before := fetched()
	var peak int64 // bytes in state_dir: the image never goes there
	for i := 0; i < kills; i++ {
		// The answer stops moving after stall bytes: whatever the resume point, the image
		// cannot finish (20 × ≤ 700 KiB < 16 MiB), and the agent is killed once it has read
		// about that much (its reads count its configuration too), a little after.
		stall := int64(16<<10 + rng.IntN(684<<10))
		w.srv.SetFaults(testserver.Faults{PathPrefix: prefix, StallAfter: stall})
		cmd := exec.Command(bin, "--config", w.cfg, "check", "--once")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for procRead(cmd.Process.Pid) < stall && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if time.Now().After(deadline) { // its goroutines, to say where it waits
			cmd.Process.Signal(syscall.SIGQUIT)
			cmd.Wait()
			t.Fatalf("kill %d: the agent did not read the %d bytes it was sent in 10 s:\n%s", i, stall, errb.String())
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		w.srv.SetFaults(testserver.Faults{}) // the stalled answer ends
		env, _ := exec.Command("grub-editenv", genv, "list").Output()
		if strings.Contains(string(env), "upgrade_available=1") {
			if got, _ := os.ReadFile(pb); !bytes.Equal(got[:size], img) {
				t.Fatalf("kill %d: the environment asks to try slot b, which does not hold the image: %q", i, env)
			}
		}
		if a, _ := os.ReadFile(pa); !bytes.Equal(a, make([]byte, len(a))) {
			t.Fatalf("kill %d: the booted partition a was written", i)
		}
		peak = max(peak, dirBytes(t, w.state))
	}
	r := w.agent(nil, "check", "--once")
	if r.code != 0 {
		t.Fatalf("the run after %d kills: exit %d\n%s", kills, r.code, r.stderr)
	}
	if got, _ := os.ReadFile(pb); !bytes.Equal(got[:size], img) {
		t.Fatal("slot b does not hold the image")
	}
	if env, _ := exec.Command("grub-editenv", genv, "list").Output(); !strings.Contains(string(env), "ota_slot=b") || !strings.Contains(string(env), "upgrade_available=1") {
		t.Fatalf("environment after the install: %s", env)
	}
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "marked to try b") {
		t.Fatalf("status:\n%s", st.stdout)
	}
	if peak = max(peak, dirBytes(t, w.state)); peak > 1<<20 {
		t.Errorf("state_dir held %d bytes during a %d-byte OS update: the image was staged there", peak, size)
	}
	fmt.Printf("OS image streamed into its partition (%s mode): state_dir held at most %d KiB during the %d MiB update\n", mode, peak>>10, size>>20)
	again := fetched() - before - size // the answers' JSON and a payload's tar and gzip framing included
	fmt.Printf("OS image streamed into its partition (%s mode): %d SIGKILLs at random offsets, %d bytes fetched again (%.1f KiB a kill; checkpoint every %d KiB)\n",
		mode, kills, again, float64(again)/float64(kills)/1024, every>>10)
	if again > int64(kills)*(every+64<<10) {
		t.Errorf("%d bytes fetched again over %d kills: more than a checkpoint interval (%d) a kill", again, kills, every)
	}
}

// dirBytes is the size of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// procRead is how many bytes a process has read (read syscalls, the socket's included:
// /proc/<pid>/io).
func procRead(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
