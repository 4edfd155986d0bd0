package packaging

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestStatementSignVerify(t *testing.T) {
	privPEM, pubPEM, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKeyPEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := Statement{App: "scoreboard", Version: "1.0.0", SHA256: strings.Repeat("a", 64), MD5: strings.Repeat("b", 32), Size: 10, Serial: 3}
	if got := string(s.SignedBytes()); got != "ota-release-v1\napp=scoreboard\nversion=1.0.0\nsha256="+strings.Repeat("a", 64)+"\nmd5="+strings.Repeat("b", 32)+"\nsize=10\nserial=3\n" {
		t.Fatalf("signed bytes %q", got)
	}
	sig, keyid := s.Sign(priv)
	if len(keyid) != 16 {
		t.Fatalf("keyid %q", keyid)
	}
	set := NewKeySet(0, 1, pub)
	check := func(s Statement, sigs ...Signature) error { return set.Check(s.What(), s.SignedBytes(), sigs) }
	if err := check(s, Signature{keyid, sig}); err != nil {
		t.Fatal(err)
	}
	s2 := s
	s2.Serial = 4
	if err := check(s2, Signature{keyid, sig}); !errors.Is(err, ErrBadSig) {
		t.Fatalf("changed serial: %v", err)
	}
	if err := check(s, Signature{"0000000000000000", sig}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown keyid: %v", err)
	}
	if err := check(s, Signature{keyid, "not base64!"}); !errors.Is(err, ErrBadSig) {
		t.Fatalf("garbage sig: %v", err)
	}
	if err := check(s); !errors.Is(err, ErrThreshold) {
		t.Fatalf("no signature: %v", err)
	}
}

// TestOpenSSLKeys proves keys made by openssl are read (skipped where openssl is absent).
func TestOpenSSLKeys(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	pub := filepath.Join(dir, "k.pub.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", key).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := exec.Command("openssl", "pkey", "-in", key, "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	kb, _ := os.ReadFile(key)
	pb, _ := os.ReadFile(pub)
	priv, err := ParsePrivateKeyPEM(kb)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublicKeyPEM(pb)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(priv.Public()) {
		t.Fatal("openssl public key does not match its private key")
	}
}
