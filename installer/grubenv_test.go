package installer

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGrubEnvSurvivesACutMidWrite: grub-editenv truncates a block before it writes it, so
// the agent writes grubenv-redund first. A grubenv a cut left empty is read from the second
// copy (as dist/bootloader/grub.cfg does) and made whole again by the next write; a write
// that stops at grubenv has already put every variable, bootlimit too, in the second copy.
func TestGrubEnvSurvivesACutMidWrite(t *testing.T) {
	if _, err := exec.LookPath("grub-editenv"); err != nil {
		t.Skip("SKIPPED: grub-editenv not installed (apt-get install grub-common)")
	}
	dir := t.TempDir()
	g := GrubEnv{File: filepath.Join(dir, "grubenv")}
	if _, err := run("grub-editenv", g.File, "set", "ota_slot=a", "upgrade_available=0", "bootcount=0", "bootlimit=2"); err != nil {
		t.Fatal(err)
	}
	try := map[string]string{VarSlot: "b", VarUpgrade: "1", VarBootcount: "0"}
	if err := g.Write(try); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{g.File, g.Redund()} {
		vars := parseVars(must(run("grub-editenv", f, "list")))
		if vars["ota_slot"] != "b" || vars["upgrade_available"] != "1" || vars["bootlimit"] != "2" {
			t.Fatalf("%s after the write: %v", filepath.Base(f), vars)
		}
	}

	// A cut between grub-editenv's truncation and its write.
	os.WriteFile(g.File, nil, 0o644)
	if vars, err := g.Read(); err != nil || vars["ota_slot"] != "b" || vars["bootlimit"] != "2" {
		t.Fatalf("read with grubenv empty: %v %v, want grubenv-redund's variables", vars, err)
	}
	if err := g.Write(map[string]string{VarUpgrade: "0"}); err != nil {
		t.Fatalf("write with grubenv empty: %v", err)
	}
	if vars := parseVars(must(run("grub-editenv", g.File, "list"))); vars["ota_slot"] != "b" || vars["upgrade_available"] != "0" || vars["bootlimit"] != "2" {
		t.Fatalf("grubenv after the next write: %v, want it whole with every variable", vars)
	}

	// A write that cannot reach grubenv (a directory here) has already written the second copy.
	os.Remove(g.File)
	os.Mkdir(g.File, 0o755)
	if err := g.Write(map[string]string{VarSlot: "a"}); err == nil {
		t.Fatal("a write to a grubenv that is a directory succeeded")
	}
	if vars := parseVars(must(run("grub-editenv", g.Redund(), "list"))); vars["ota_slot"] != "a" || vars["bootlimit"] != "2" {
		t.Fatalf("grubenv-redund: %v, want the write in it before grubenv's", vars)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
