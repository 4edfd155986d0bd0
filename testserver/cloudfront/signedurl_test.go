package cloudfront

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A signed URL passes until it expires, for its object only (or, with Prefix, the objects
// published beside it); another key, a changed path or no signature is refused with
// CloudFront's error code.
func TestSignAndCheck(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	v := &Verifier{Keys: map[string]*rsa.PublicKey{"K1": &key.PublicKey}}
	const obj = "http://cdn.test/firmware/scoreboard_1.0"
	canned := (&Signer{KeyPairID: "K1", Key: key, TTL: time.Minute, Now: clock}).Sign(obj)
	prefix := (&Signer{KeyPairID: "K1", Key: key, TTL: time.Minute, Now: clock, Prefix: true}).Sign(obj)
	forged := (&Signer{KeyPairID: "K1", Key: other, TTL: time.Minute, Now: clock}).Sign(obj)
	beside := func(u string) string { return strings.Replace(u, "scoreboard_1.0?", "scoreboard_1.0.from-0.9.zst?", 1) }
	for _, c := range []struct {
		name, url string
		at        time.Time
		code      string
	}{
		{"canned", canned, now, ""},
		{"canned, expired", canned, now.Add(2 * time.Minute), "AccessDenied"},
		{"canned, another object", beside(canned), now, "AccessDenied"},
		{"prefix, the object", prefix, now, ""},
		{"prefix, its patch", beside(prefix), now, ""},
		{"another key", forged, now, "AccessDenied"},
		{"unknown key pair", strings.Replace(canned, "Key-Pair-Id=K1", "Key-Pair-Id=K9", 1), now, "InvalidKey"},
		{"unsigned", obj, now, "MissingKey"},
	} {
		code, msg := v.Check(httptest.NewRequest("GET", c.url, nil), c.at)
		if code != c.code {
			t.Errorf("%s: %q %q, want %q", c.name, code, msg, c.code)
		}
	}
}
