package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/internal/strace"
)

// TestSyscallOrderDurable checks, under strace, that one install in each payload mode makes
// every byte and directory entry the switch exposes durable before `current` is renamed, and
// the state directory after it. A SIGKILL test keeps the page cache and cannot see a missing
// fsync; the booted power cuts (make test-system) can, and this catches it in seconds.
func TestSyscallOrderDurable(t *testing.T) {
	st, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("SKIPPED: strace not installed (apt-get install strace)")
	}
	for _, mode := range []string{"full", "metadata"} {
		t.Run(mode, func(t *testing.T) {
			w := newWorld(t, 8192, "#"+mode+"\n")
			w.mustAgent("check", "--once") // generation 1 in slot a
			w.release("scoreboard", "7.0.0", randomBytes(300000, 4), 90)
			trace := filepath.Join(t.TempDir(), "strace.log")
			cmd := exec.Command(st, "-f", "-y", "-qq", "-o", trace,
				"-e", "trace=fsync,fdatasync,rename,renameat,renameat2,symlinkat", bin, "--config", w.cfg, "check", "--once")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("check under strace: %v\n%s", err, out)
			}
			state, _ := filepath.EvalSymlinks(w.state)
			ev := parseTrace(t, trace)
			checkDurableOrder(t, ev, state)
			// The peers bench's judge reads the same trace the same way.
			target, _ := os.Readlink(filepath.Join(state, "current"))
			if v := strace.Judge(ev, filepath.Join(state, target, "scoreboard"), filepath.Join(state, "current")); !v.Durable || !v.DirSync {
				t.Errorf("strace.Judge of scoreboard: %+v", v)
			}
		})
	}
	// The OS image on a partition: its bytes are fsync'd before the bootloader environment
	// is told to try it, and the environment file and its directory right after.
	t.Run("os-image", func(t *testing.T) {
		if _, err := exec.LookPath("grub-editenv"); err != nil {
			t.Skip("SKIPPED: grub-editenv not installed (apt-get install grub-common)")
		}
		w := newWorld(t, 8192, "")
		dir, _ := filepath.EvalSymlinks(w.dir)
		pa, pb, genv := filepath.Join(dir, "pa.img"), filepath.Join(dir, "pb.img"), filepath.Join(dir, "boot", "grubenv")
		os.WriteFile(pa, make([]byte, 1<<20), 0o644)
		os.WriteFile(pb, make([]byte, 1<<20), 0o644)
		os.MkdirAll(filepath.Dir(genv), 0o755)
		os.WriteFile(filepath.Join(dir, "boot_id"), []byte("1"), 0o644)
		exec.Command("grub-editenv", genv, "create").Run()
		w.writeConfig("slots:\n  os:\n    backend: partition\n    devices: {a: " + pa + ", b: " + pb + "}\n    bootloader: grub\n    grubenv: " + genv + "\n    boot_id_file: " + filepath.Join(dir, "boot_id") + "\n")
		trace := filepath.Join(t.TempDir(), "strace.log")
		cmd := exec.Command(st, "-f", "-y", "-qq", "-o", trace,
			"-e", "trace=fsync,fdatasync,rename,renameat,renameat2,execve", bin, "--config", w.cfg, "check", "--once")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("check under strace: %v\n%s", err, out)
		}
		ev := parseTrace(t, trace)
		set := -1
		for i, e := range ev {
			if e.Call == "exec" && strings.Contains(e.Path, `"set"`) && strings.Contains(e.Path, "upgrade_available=1") {
				set = i
			}
		}
		if set < 0 {
			t.Fatalf("no grub-editenv set in the trace (%d calls)", len(ev))
		}
		synced := func(lo, hi int, path string) bool {
			for _, e := range ev[lo:hi] {
				if e.Call == "fsync" && e.Path == path {
					return true
				}
			}
			return false
		}
		if !synced(0, set, pb) {
			t.Error("the image's partition was not fsync'd before the environment write")
		}
		if !synced(set, len(ev), genv) || !synced(set, len(ev), filepath.Dir(genv)) {
			t.Error("the environment file and its directory were not fsync'd after the write")
		}
	})
}

func parseTrace(t *testing.T, file string) []strace.Event {
	t.Helper()
	ev, err := strace.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func checkDurableOrder(t *testing.T, ev []strace.Event, state string) {
	t.Helper()
	cur := filepath.Join(state, "current")
	target, err := os.Readlink(cur)
	if err != nil {
		t.Fatal(err)
	}
	slot := filepath.Join(state, target)
	switchAt := -1
	for i, e := range ev {
		if e.Call == "rename" && e.Path == cur {
			switchAt = i
		}
	}
	if switchAt < 0 {
		t.Fatalf("no rename of %s in the trace (%d calls)", cur, len(ev))
	}
	synced := func(lo, hi int, ok func(string) bool) bool {
		for _, e := range ev[lo:hi] {
			if e.Call == "fsync" && ok(e.Path) {
				return true
			}
		}
		return false
	}
	index := func(call, path string) int {
		for i, e := range ev {
			if e.Call == call && e.Path == path {
				return i
			}
		}
		return -1
	}
	entries, _ := os.ReadDir(slot)
	for _, en := range entries {
		app := en.Name()
		if app == ".manifest.json" {
			continue
		}
		if !synced(0, switchAt, func(p string) bool {
			base := filepath.Base(p)
			return p == filepath.Join(slot, app) || p == filepath.Join(slot+".tmp", app) ||
				strings.HasPrefix(base, ".in-"+app+"_") || (filepath.Dir(p) == filepath.Join(state, "downloads") && strings.HasPrefix(base, app+"_"))
		}) {
			t.Errorf("%s of the new slot was not fsync'd before the switch", app)
		}
	}
	if !synced(0, switchAt, func(p string) bool { return p == filepath.Join(slot+".tmp", ".manifest.json.tmp") }) {
		t.Error("the manifest was not fsync'd before the switch")
	}
	m := index("rename", filepath.Join(slot+".tmp", ".manifest.json"))
	if m < 0 || !synced(m, switchAt, func(p string) bool { return p == slot+".tmp" }) {
		t.Error("the staging directory was not fsync'd after its manifest's rename and before the switch")
	}
	s := index("rename", slot)
	if s < 0 || s > switchAt || !synced(s, switchAt, func(p string) bool { return p == filepath.Join(state, "slots") }) {
		t.Error("slots/ was not fsync'd after the slot's rename and before the switch")
	}
	if !synced(switchAt, len(ev), func(p string) bool { return p == state }) {
		t.Error("the state directory was not fsync'd after the switch")
	}
}

// TestUnchangedCheckCommitsOnce: a check the server answers with a 304 writes the database in
// one transaction (the check's record, the time floor and the counters together: bbolt's two
// fdatasyncs) and syncs nothing else. Devices poll for years on flash; every commit is wear.
func TestUnchangedCheckCommitsOnce(t *testing.T) {
	st, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("SKIPPED: strace not installed (apt-get install strace)")
	}
	w := newWorld(t, 8192, "")
	w.mustAgent("check", "--once")
	trace := filepath.Join(t.TempDir(), "strace.log")
	cmd := exec.Command(st, "-f", "-y", "-qq", "-o", trace, "-e", strace.Calls, bin, "--config", w.cfg, "check", "--once")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "304") {
		t.Fatalf("second check under strace: %v\n%s", err, out)
	}
	state, _ := filepath.EvalSymlinks(w.state)
	dbPath := filepath.Join(state, "agent.db")
	var other []string
	for _, e := range parseTrace(t, trace) {
		if e.Call == "fsync" && e.Path != dbPath {
			other = append(other, e.Path)
		}
	}
	// bbolt commits with two fdatasyncs (the pages, then the meta page); growing the file
	// adds an fsync to the same commit.
	raw, _ := os.ReadFile(trace)
	if n := regexp.MustCompile(`fdatasync\(\d+<`+regexp.QuoteMeta(dbPath)+`>\)`).FindAllIndex(raw, -1); len(n) != 2 || len(other) > 0 {
		t.Fatalf("a 304 check: %d fdatasyncs of agent.db (want one commit: 2), other syncs %v", len(n), other)
	}
}
