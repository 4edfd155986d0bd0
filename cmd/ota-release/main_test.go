package main

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
	"github.com/spf13/pflag"
)

func TestKeygenAndSignCatalog(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run([]string{"keygen", "--out", filepath.Join(dir, "k")}, &out); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "k.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", fi, err)
	}
	if _, err := testserver.WriteSample(filepath.Join(dir, "cat"), 100, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"sign", "--key", filepath.Join(dir, "k.pem"), "--catalog", filepath.Join(dir, "cat")}, &out); err != nil {
		t.Fatal(err)
	}
	cat, err := testserver.LoadCatalog(filepath.Join(dir, "cat"))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(filepath.Join(dir, "k.pub.pem"))
	pub, _ := packaging.ParsePublicKeyPEM(pubPEM)
	serials := map[string]map[int64]bool{}
	for i, r := range cat.Rows {
		st := cat.Statement(i)
		if err := packaging.NewKeySet(0, 1, pub).Check(st.What(), st.SignedBytes(), []packaging.Signature{{KeyID: r.KeyID, Sig: r.Sig}}); err != nil || st.V != 2 || st.Channel != r.Env {
			t.Fatalf("%s: %v", r.Key(), err)
		}
		if serials[r.App] == nil {
			serials[r.App] = map[int64]bool{}
		}
		if r.Serial == 0 || serials[r.App][r.Serial] {
			t.Fatalf("%s: serial %d not unique per app", r.Key(), r.Serial)
		}
		serials[r.App][r.Serial] = true
		f, err := os.Open(filepath.Join(dir, "cat", r.File+".release"))
		if err != nil {
			t.Fatal(err)
		}
		rf, err := packaging.ParseReleaseFile(f)
		f.Close()
		if err != nil || rf.Sig != r.Sig {
			t.Fatalf("%s.release: %v", r.Key(), err)
		}
	}
	if err := run([]string{"sign", "--key", filepath.Join(dir, "k.pub.pem"), "--catalog", filepath.Join(dir, "cat")}, &out); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("signing with a public key: %v", err)
	}
}

// bundle writes what the server sends a device: its rows' binaries and package_details.json
// with the statements inline, readable by the agent's own payload reader.
func TestBundle(t *testing.T) {
	dir := t.TempDir()
	priv, _, _ := packaging.GenerateKey()
	if _, err := testserver.WriteSample(filepath.Join(dir, "cat"), 100, 1, priv); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	file := filepath.Join(dir, "device.tar.gz")
	if err := run([]string{"bundle", "--catalog", filepath.Join(dir, "cat"), "--out", file, "--cpu", "armv8", "--attr", "gamer=prod"}, &out); err != nil {
		t.Fatal(err)
	}
	members, pr := payloadMembers(t, file)
	want := "os_armv8_1.1.0 scoreboard_1.0.0 videoStreamer_0.0.1"
	if strings.Join(members, " ") != want {
		t.Fatalf("members %v, want %s\n%s", members, want, out.String())
	}
	for app, e := range pr.Details().Entries {
		if e.Sig == "" || e.StatusCode != 200 || e.MD5 == "" {
			t.Errorf("%s: %+v: want a signed 200 entry", app, e)
		}
	}
	if err := run([]string{"bundle", "--catalog", filepath.Join(dir, "cat"), "--out", file, "--cpu", "x86"}, &out); err == nil {
		t.Fatal("a bundle for no row was written")
	}
}

// Every command's --help exits 0 with a usage line and every flag, double-dash style.
func TestHelpOfEveryCommand(t *testing.T) {
	for _, name := range order {
		var out bytes.Buffer
		if err := run(append(strings.Fields(name), "--help"), &out); err != nil {
			t.Fatalf("%s --help: %v", name, err)
		}
		text := out.String()
		if !strings.HasPrefix(text, "usage: ota-release "+name) || !strings.Contains(text, "--help") || strings.Contains(text, "\n  -help") {
			t.Fatalf("%s --help:\n%s", name, text)
		}
		fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
		commands[name].flags(fs)
		fs.VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(text, "--"+f.Name) {
				t.Errorf("%s --help does not list --%s", name, f.Name)
			}
		})
	}
	var out bytes.Buffer
	if err := run([]string{"--help"}, &out); err != nil || !strings.Contains(out.String(), "keys rotate") {
		t.Fatalf("--help: %v\n%s", err, out.String())
	}
	if err := run([]string{"sign", "--nope"}, &out); !errors.Is(err, errUsage) {
		t.Fatalf("an unknown flag: %v, want a usage error (exit 2)", err)
	}
}

// keygen never replaces a key pair unless told to.
func TestKeygenKeepsExistingKey(t *testing.T) {
	dir := t.TempDir()
	k := filepath.Join(dir, "k")
	var out bytes.Buffer
	if err := run([]string{"keygen", "--out", k}, &out); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(k + ".pem")
	err := run([]string{"keygen", "--out", k}, &out)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second keygen: %v", err)
	}
	if after, _ := os.ReadFile(k + ".pem"); !bytes.Equal(before, after) {
		t.Fatal("the private key was overwritten")
	}
	if err := run([]string{"keygen", "--out", k, "--force"}, &out); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(k + ".pem"); bytes.Equal(before, after) {
		t.Fatal("--force did not replace the key")
	}
}

// keys rotate: repeated --add and --remove accumulate (the key meant to be revoked is
// revoked), removing a key the set does not hold is refused, and the resulting set is
// printed.
func TestRotateRepeatedFlags(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	key := func(n string) (string, string) {
		p := filepath.Join(dir, n)
		if err := run([]string{"keygen", "--out", p}, &out); err != nil {
			t.Fatal(err)
		}
		return p + ".pem", p + ".pub.pem"
	}
	id := func(pubPath string) string {
		raw, _ := os.ReadFile(pubPath)
		k, _ := packaging.ParsePublicKeyPEM(raw)
		return packaging.KeyID(k)
	}
	privA, pubA := key("a")
	_, pubB := key("b")
	_, pubC := key("c")
	_, pubD := key("d")
	file := filepath.Join(dir, "ota-keys.release")
	if err := run([]string{"keys", "rotate", "--out", file, "--current", pubA, "--add", pubB, "--add", pubC, "--add", pubD, "--sign-with", privA}, &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run([]string{"keys", "rotate", "--out", file, "--remove", pubB, "--remove", pubC, "--sign-with", privA}, &out); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(file)
	f, err := packaging.ParseKeysFile(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	set, _ := f.Versions[len(f.Versions)-1].Set()
	if _, ok := set.Keys[id(pubB)]; ok || len(set.Keys) != 2 {
		t.Fatalf("after --remove B --remove C the set holds %v", set.IDs())
	}
	for _, want := range []string{"key set v2", id(pubA), id(pubD)} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the resulting set is not printed (%s):\n%s", want, out.String())
		}
	}
	if err := run([]string{"keys", "rotate", "--out", file, "--remove", pubB, "--sign-with", privA}, &out); err == nil || !strings.Contains(err.Error(), "not in the current set") {
		t.Fatalf("removing a key the set lacks: %v", err)
	}
}

// sign numbers serials in release order per app across channels: in the sample every beta
// build (a higher version) outranks its prod row; signing again keeps them; a replaced row
// outranks every other of its app.
func TestSignSerialsFollowReleaseOrder(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run([]string{"keygen", "--out", filepath.Join(dir, "k")}, &out); err != nil {
		t.Fatal(err)
	}
	catDir := filepath.Join(dir, "cat")
	if _, err := testserver.WriteSample(catDir, 100, 1, nil); err != nil {
		t.Fatal(err)
	}
	sign := func() map[string]int64 {
		out.Reset()
		if err := run([]string{"sign", "--key", filepath.Join(dir, "k.pem"), "--catalog", catDir}, &out); err != nil {
			t.Fatal(err)
		}
		c, err := testserver.LoadCatalog(catDir)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int64{}
		for _, r := range c.Rows {
			m[r.App+"/"+r.Env] = r.Serial
		}
		return m
	}
	first := sign()
	for _, app := range []string{"os_armv8", "os_armv7", "scoreboard", "videoStreamer"} {
		if first[app+"/beta"] <= first[app+"/prod"] {
			t.Fatalf("%s: beta serial %d not above prod's %d", app, first[app+"/beta"], first[app+"/prod"])
		}
	}
	if again := sign(); !maps.Equal(first, again) || !strings.Contains(out.String(), "(kept)") {
		t.Fatalf("signing again renumbered: %v -> %v\n%s", first, again, out.String())
	}
	// The operator replaces scoreboard/prod's binary and version.
	c, _ := testserver.LoadCatalog(catDir)
	for i, r := range c.Rows {
		if r.App == "scoreboard" && r.Env == "prod" {
			os.WriteFile(filepath.Join(catDir, "blobs/scoreboard_1.0.1"), []byte("scoreboard 1.0.1"), 0o644)
			c.Rows[i].Version, c.Rows[i].File = "1.0.1", "blobs/scoreboard_1.0.1"
		}
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if third := sign(); third["scoreboard/prod"] <= first["scoreboard/beta"] || !strings.Contains(out.String(), "(replaced)") {
		t.Fatalf("a replaced row: serial %d, beta has %d\n%s", third["scoreboard/prod"], first["scoreboard/beta"], out.String())
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"1.0.0", "2.0.0", -1}, {"1.10", "1.9", 1}, {"2.0.0-beta", "2.0.0", -1}, {"2.0.0", "2.0.0.1", -1}, {"0.1.2", "0.0.1", 1}, {"1.0", "1.0", 0}, {"1.0~rc1", "1.0", -1}} {
		if got := catalog.CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// index refuses what is not a regular file (a FIFO would hang it); bundle refuses bad
// attribute names; a pin wins over an attribute's row of the same app.
func TestPublisherInputChecks(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run([]string{"index", fifo}, &out); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("index of a FIFO: %v", err)
	}
	priv, _, _ := packaging.GenerateKey()
	catDir := filepath.Join(dir, "cat")
	if _, err := testserver.WriteSample(catDir, 100, 1, priv); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b.tar.gz")
	base := []string{"bundle", "--catalog", catDir, "--out", file, "--cpu", "armv8"}
	if err := run(append(base, "--attr", "gam'er=prod"), &out); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "letters, digits") {
		t.Fatalf("--attr with a quote: %v", err)
	}
	out.Reset()
	if err := run(append(base, "--attr", "gamer=prod", "--pin", "scoreboard=beta"), &out); err != nil {
		t.Fatal(err)
	}
	members, _ := payloadMembers(t, file)
	if got := strings.Join(members, " "); got != "os_armv8_1.1.0 scoreboard_2.0.0 videoStreamer_0.0.1" || !strings.Contains(out.String(), "--pin scoreboard=beta wins") {
		t.Fatalf("pinned bundle holds %s\n%s", got, out.String())
	}
}

// payloadMembers reads a bundle with the agent's own payload reader: its members' names, and
// the reader (its details).
func payloadMembers(t *testing.T, file string) ([]string, *packaging.PayloadReader) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := packaging.NewPayloadReader(f, packaging.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	for {
		name, _, _, err := pr.Next()
		if err != nil {
			break
		}
		members = append(members, name)
	}
	return members, pr
}
