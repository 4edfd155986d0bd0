package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/packaging/ramp"
	"github.com/ota-agent/ota-agent/testserver"
)

// sign --ramp phases the rows it numbers as new (and only them); rollout halt and resume sign
// the same statement again, same serial, with the halt and then the moved start; every
// statement verifies; bad input is a usage error that says what is wrong.
func TestSignRampAndRollout(t *testing.T) {
	dir := t.TempDir()
	key, cat := filepath.Join(dir, "k"), filepath.Join(dir, "cat")
	var out bytes.Buffer
	if err := run([]string{"keygen", "--out", key}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := testserver.WriteSample(cat, 100, 1, nil); err != nil {
		t.Fatal(err)
	}
	sign := func(args ...string) error {
		return run(append([]string{"sign", "--key", key + ".pem", "--catalog", cat}, args...), &out)
	}
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	// a new scoreboard release, ramped over two days from a given start
	c, _ := testserver.LoadCatalog(cat)
	for i, r := range c.Rows {
		if r.App == "scoreboard" && r.Env == "prod" {
			c.Rows[i].Version, c.Rows[i].Serial = "1.1.0", 0
		}
	}
	c.Save()
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	if err := sign("--ramp", "1%:2h,100%:2d", "--start", start.Format(time.RFC3339)); err != nil {
		t.Fatal(err)
	}
	want := "1799049600:1@7200,100@172800"
	statement := func(app, env string) (testserver.Row, packaging.Statement) {
		c, err := testserver.LoadCatalog(cat)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range c.Rows {
			if r.App == app && r.Env == env {
				pub, _ := os.ReadFile(key + ".pub.pem")
				k, _ := packaging.ParsePublicKeyPEM(pub)
				st := c.Statement(i)
				if err := packaging.NewKeySet(0, 1, k).Check(st.What(), st.SignedBytes(), []packaging.Signature{{KeyID: r.KeyID, Sig: r.Sig}}); err != nil {
					t.Fatalf("%s %s: %v", app, env, err)
				}
				return r, st
			}
		}
		t.Fatalf("no row %s %s", app, env)
		return testserver.Row{}, packaging.Statement{}
	}
	r, st := statement("scoreboard", "prod")
	if st.Ramp != want || !strings.Contains(out.String(), "ramp 1% by +2h0m0s, 100% by +48h0m0s from 2027-01-04T08:00:00Z") {
		t.Fatalf("ramped row: %q\n%s", st.Ramp, out.String())
	}
	if _, other := statement("scoreboard", "beta"); other.Ramp != "" {
		t.Fatalf("a kept row took the ramp: %q", other.Ramp)
	}
	serial := r.Serial

	halt := start.Add(10 * time.Hour)
	if err := run([]string{"rollout", "halt", "scoreboard", "1.1.0", "prod", "--key", key + ".pem", "--catalog", cat, "--at", halt.Format(time.RFC3339)}, &out); err != nil {
		t.Fatal(err)
	}
	if r, st := statement("scoreboard", "prod"); st.Halted != halt.Unix() || st.Ramp != want || r.Serial != serial {
		t.Fatalf("halted: %+v serial %d", st.Class, r.Serial)
	}
	if err := run([]string{"rollout", "halt", "scoreboard", "1.1.0", "prod", "--key", key + ".pem", "--catalog", cat}, &out); err == nil || !strings.Contains(err.Error(), "already halted") {
		t.Fatalf("halted twice: %v", err)
	}
	resume := halt.Add(5 * time.Hour)
	if err := run([]string{"rollout", "resume", "scoreboard", "1.1.0", "prod", "--key", key + ".pem", "--catalog", cat, "--at", resume.Format(time.RFC3339)}, &out); err != nil {
		t.Fatal(err)
	}
	_, st = statement("scoreboard", "prod")
	rp, _ := ramp.Parse(st.Ramp)
	before, _ := ramp.Parse(want)
	if st.Halted != 0 || rp.Start != start.Add(5*time.Hour).Unix() || rp.Level(resume) != before.Level(halt) {
		t.Fatalf("resumed: %+v (level %d, was %d at the halt)", st.Class, rp.Level(resume), before.Level(halt))
	}
	// a re-sign keeps the rollout and the serial
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	if r, again := statement("scoreboard", "prod"); again.Ramp != st.Ramp || r.Serial != serial {
		t.Fatalf("re-signed: %q serial %d", again.Ramp, r.Serial)
	}
	for _, bad := range [][]string{
		{"sign", "--key", key + ".pem", "--catalog", cat, "--ramp", "50%:2h"},
		{"sign", "--key", key + ".pem", "--catalog", cat, "--ramp", "2h", "--v1"},
		{"sign", "--key", key + ".pem", "--catalog", cat, "--start", "2027-01-01T00:00:00Z"},
		{"rollout", "pause", "scoreboard", "1.1.0", "prod", "--key", key + ".pem", "--catalog", cat},
		{"rollout", "halt", "scoreboard", "--key", key + ".pem", "--catalog", cat},
	} {
		if err := run(bad, &out); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%v: %v", bad, err)
		}
	}
	if err := run([]string{"rollout", "halt", "scoreboard", "9.9.9", "prod", "--key", key + ".pem", "--catalog", cat}, &out); err == nil || !strings.Contains(err.Error(), "no row scoreboard 9.9.9") {
		t.Errorf("an unknown release: %v", err)
	}
}
