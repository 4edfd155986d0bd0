package packaging

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func newKeys(t *testing.T, n int) ([]ed25519.PrivateKey, []ed25519.PublicKey) {
	var privs []ed25519.PrivateKey
	var pubs []ed25519.PublicKey
	for range n {
		privPEM, _, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		priv, _ := ParsePrivateKeyPEM(privPEM)
		privs, pubs = append(privs, priv), append(pubs, priv.Public().(ed25519.PublicKey))
	}
	return privs, pubs
}

// version makes key set version v of pubs, signed by signers.
func version(v int64, threshold int, pubs []ed25519.PublicKey, signers ...ed25519.PrivateKey) SignedKeySet {
	s := SignedKeySet{Version: v, Threshold: threshold}
	for _, p := range pubs {
		s.Keys = append(s.Keys, base64.StdEncoding.EncodeToString(p))
	}
	s.Sigs = SignAll(s.SignedBytes(), signers...)
	return s
}

// A v2 statement binds its channel and class: the same signature does not cover another.
func TestStatementV2Bytes(t *testing.T) {
	privs, pubs := newKeys(t, 1)
	s := Statement{App: "scoreboard", Version: "2.0.0", SHA256: strings.Repeat("a", 64), MD5: strings.Repeat("b", 32), Size: 10, Serial: 9,
		Class: RowClass("scoreboard", "beta", map[string]bool{"Gamer": true, "camera": true, "off": false})}
	want := "ota-release-v2\napp=scoreboard\nversion=2.0.0\nsha256=" + strings.Repeat("a", 64) + "\nmd5=" + strings.Repeat("b", 32) + "\nsize=10\nserial=9\nchannel=beta\nattrs=camera,gamer\ncpu_arch=\n"
	if got := string(s.SignedBytes()); got != want {
		t.Fatalf("signed bytes %q", got)
	}
	sig, keyid := s.Sign(privs[0])
	prod := s
	prod.Channel = "prod"
	set := NewKeySet(0, 1, pubs...)
	if err := set.Check(prod.What(), prod.SignedBytes(), []Signature{{keyid, sig}}); !errors.Is(err, ErrBadSig) {
		t.Fatalf("a beta signature over a prod claim: %v", err)
	}
	if c := RowClass("os_armv8", "PROD", nil); c.CPUArch != "armv8" || c.Channel != "prod" || c.Attrs != "" {
		t.Fatalf("os class %+v", c)
	}
}

// Thresholds count distinct trusted keys with valid signatures.
func TestThreshold(t *testing.T) {
	privs, pubs := newKeys(t, 3)
	set := NewKeySet(0, 2, pubs...)
	msg := []byte("m")
	if err := set.Check("m", msg, SignAll(msg, privs[0])); !errors.Is(err, ErrThreshold) {
		t.Fatalf("one of two: %v", err)
	}
	if err := set.Check("m", msg, SignAll(msg, privs[0], privs[0])); !errors.Is(err, ErrThreshold) {
		t.Fatalf("the same key twice: %v", err)
	}
	if err := set.Check("m", msg, SignAll(msg, privs[0], privs[2])); err != nil {
		t.Fatal(err)
	}
}

// A key-set chain v1→v2→v3 is followed from the configured keys, also by a device that
// skipped v2; fewer signatures than the threshold, a gap, an older file and a removed key
// are refused.
func TestKeySetChain(t *testing.T) {
	privs, pubs := newKeys(t, 5)
	v1 := version(1, 1, pubs[1:2], privs[0])           // K1 replaces K0, signed by K0
	v2 := version(2, 2, pubs[2:4], privs[1])           // K2+K3, threshold 2, signed by K1
	v3 := version(3, 1, pubs[4:5], privs[2], privs[3]) // K4, signed by K2 and K3
	config := NewKeySet(0, 1, pubs[0])
	f := &KeysFile{Versions: []SignedKeySet{v3, v1, v2}}
	got, err := f.Advance(config)
	if err != nil || got.Version != 3 || len(got.Keys) != 1 || got.Keys[KeyID(pubs[4])] == nil {
		t.Fatalf("from the configured keys: v%d %v", got.Version, err)
	}
	held, _ := (&KeysFile{Versions: []SignedKeySet{v1}}).Advance(config)
	if got, err := f.Advance(held); err != nil || got.Version != 3 {
		t.Fatalf("a device on v1 that never saw v2: v%d %v", got.Version, err)
	}
	if err := got.Check("s", []byte("s"), SignAll([]byte("s"), privs[0])); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("the removed K0 still signs: %v", err)
	}
	weak := version(3, 1, pubs[4:5], privs[2]) // one of v2's two
	if got, err := (&KeysFile{Versions: []SignedKeySet{v1, v2, weak}}).Advance(config); !errors.Is(err, ErrThreshold) || got.Version != 2 {
		t.Fatalf("under the threshold: v%d %v", got.Version, err)
	}
	on3, _ := f.Advance(config)
	if got, err := (&KeysFile{Versions: []SignedKeySet{v1, v2}}).Advance(on3); err == nil || got.Version != 3 {
		t.Fatalf("an older file: v%d %v", got.Version, err)
	}
	if _, err := (&KeysFile{Versions: []SignedKeySet{v1, v3}}).Advance(held); err == nil || !strings.Contains(err.Error(), "missing v2") {
		t.Fatalf("a gap: %v", err)
	}
	forged := version(2, 1, pubs[4:5], privs[4]) // signed by a key v1 never trusted
	if got, err := (&KeysFile{Versions: []SignedKeySet{v1, forged}}).Advance(config); !errors.Is(err, ErrUnknownKey) || got.Version != 1 {
		t.Fatalf("forged v2: v%d %v", got.Version, err)
	}
}
