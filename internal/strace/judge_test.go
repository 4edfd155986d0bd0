package strace

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestJudge runs real shell installs under strace and judges them.
func TestJudge(t *testing.T) {
	st, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("SKIPPED: strace not installed (apt-get install strace)")
	}
	for _, c := range []struct {
		name, script, file string
		durable, dirSync   bool
		how                string
	}{
		{"in place", "echo x > f", "f", false, false, "written in place under its final name, never fsync'd"},
		{"in place synced", "echo x > f && sync f", "f", false, false, "written in place under its final name, fsync'd after"},
		{"rename unsynced", "echo x > f.tmp && mv f.tmp f", "f", false, false, "renamed into place without an fsync"},
		{"rename synced", "echo x > f.tmp && sync f.tmp && mv f.tmp f && sync .", "f", true, true, "fsync'd, then renamed into place"},
		{"directory renamed", "mkdir d.tmp && echo x > d.tmp/f && sync d.tmp/f && mv d.tmp d", "d/f", true, false, "fsync'd, then renamed into place"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := filepath.EvalSymlinks(t.TempDir())
			trace := filepath.Join(t.TempDir(), "trace")
			cmd := exec.Command(st, "-f", "-y", "-qq", "-o", trace, "-e", Calls, "sh", "-c", c.script)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			ev, err := Parse(trace)
			if err != nil {
				t.Fatal(err)
			}
			v := Judge(ev, filepath.Join(dir, c.file), "")
			if v.Durable != c.durable || v.DirSync != c.dirSync || v.How != c.how {
				t.Fatalf("got %+v, want durable %v, dir synced %v, %q\n%+v", v, c.durable, c.dirSync, c.how, ev)
			}
		})
	}
}
