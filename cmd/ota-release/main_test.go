package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
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
