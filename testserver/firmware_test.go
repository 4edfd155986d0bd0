package testserver

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/testserver/cloudfront"
)

func httpGet(t *testing.T, u string, hdrs ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Set(hdrs[i], hdrs[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestFirmwareCDN(t *testing.T) {
	s, base, _ := newSample(t, Options{})
	row := s.Catalog().Rows[0]
	data, _ := os.ReadFile(row.Path())
	u := base + "/firmware/" + row.Key()
	r, b := httpGet(t, u)
	if r.StatusCode != 200 || string(b) != string(data) || r.Header.Get("ETag") != `"`+row.MD5+`"` || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("%d etag %q ranges %q", r.StatusCode, r.Header.Get("ETag"), r.Header.Get("Accept-Ranges"))
	}
	r, b = httpGet(t, u, "Range", "bytes=10-19", "If-Range", `"`+row.MD5+`"`)
	if r.StatusCode != 206 || string(b) != string(data[10:20]) {
		t.Fatalf("Range + matching If-Range: %d", r.StatusCode)
	}
	r, b = httpGet(t, u, "Range", "bytes=10-19", "If-Range", `"00"`)
	if r.StatusCode != 200 || len(b) != len(data) {
		t.Fatalf("Range + stale If-Range: %d, want 200 whole", r.StatusCode)
	}
	if r, _ := httpGet(t, base+"/firmware/nope_1"); r.StatusCode != 404 || r.Header.Get("Content-Type") != "text/xml" {
		t.Fatalf("missing object: %d", r.StatusCode)
	}
	if r, _ := httpGet(t, u+".release"); r.StatusCode != 404 {
		t.Fatalf("unsigned row has a .release: %d", r.StatusCode)
	}
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignedURLs(t *testing.T) {
	key, other := rsaKey(t), rsaKey(t)
	s, base, clk := newSample(t, Options{SignedURLKeys: map[string]*rsa.PublicKey{"K2JCJMDEHXQW5F": &key.PublicKey}})
	row := s.Catalog().Rows[0]
	u := base + "/firmware/" + row.Key()
	signer := &URLSigner{KeyPairID: "K2JCJMDEHXQW5F", Key: key, TTL: time.Minute, Now: clk.now}
	good := signer.Sign(u)
	if r, _ := httpGet(t, good); r.StatusCode != 200 {
		t.Fatalf("canned policy: %d", r.StatusCode)
	}
	// A custom policy with a wildcard resource and SHA256.
	policy := fmt.Sprintf(`{"Statement":[{"Resource":"%s/firmware/*","Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, base, clk.now().Add(time.Hour).Unix())
	custom := u + "?Policy=" + cloudfront.Encode([]byte(policy)) +
		"&Signature=" + sign(t, key, policy, true) + "&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256"
	if r, b := httpGet(t, custom); r.StatusCode != 200 {
		t.Fatalf("custom policy: %d %s", r.StatusCode, b)
	}
	wrongKey := (&URLSigner{KeyPairID: "K2JCJMDEHXQW5F", Key: other, TTL: time.Minute, Now: clk.now}).Sign(u)
	q := func(raw string, edit func(url.Values)) string {
		pu, _ := url.Parse(raw)
		v := pu.Query()
		edit(v)
		pu.RawQuery = v.Encode()
		return pu.String()
	}
	cases := []struct{ name, url, code string }{
		{"no parameters", u, "MissingKey"},
		{"unknown key pair", q(good, func(v url.Values) { v.Set("Key-Pair-Id", "APKAUNKNOWN") }), "InvalidKey"},
		{"signature not base64", q(good, func(v url.Values) { v.Set("Signature", "!!!") }), "MalformedSignature"},
		{"policy not JSON", q(custom, func(v url.Values) { v.Set("Policy", "e30K~~") }), "MalformedPolicy"},
		{"wrong key", wrongKey, "AccessDenied"},
		{"other object", strings.Replace(good, row.Key(), s.Catalog().Rows[1].Key(), 1), "AccessDenied"},
		{"tampered expiry", q(good, func(v url.Values) { v.Set("Expires", "9999999999") }), "AccessDenied"},
	}
	for _, c := range cases {
		r, b := httpGet(t, c.url)
		if r.StatusCode != 403 || !strings.Contains(string(b), "<Code>"+c.code+"</Code>") || r.Header.Get("X-Cache") != "Error from cloudfront" || r.Header.Get("Content-Type") != "text/xml" {
			t.Errorf("%s: %d %s", c.name, r.StatusCode, b)
		}
	}
	// Expiry is checked per request: the first range works, the resume after expiry does not.
	if r, _ := httpGet(t, good, "Range", "bytes=0-99"); r.StatusCode != 206 {
		t.Fatalf("first range: %d", r.StatusCode)
	}
	clk.advance(2 * time.Minute)
	if r, b := httpGet(t, good, "Range", "bytes=100-"); r.StatusCode != 403 || !strings.Contains(string(b), "Access denied") {
		t.Fatalf("range after expiry: %d %s", r.StatusCode, b)
	}
}

func sign(t *testing.T, k *rsa.PrivateKey, policy string, sha256 bool) string {
	var sig []byte
	var err error
	if sha256 {
		h := crypto.SHA256.New()
		h.Write([]byte(policy))
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h.Sum(nil))
	} else {
		h := sha1.Sum([]byte(policy))
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA1, h[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return cloudfront.Encode(sig)
}

func TestDownloadFieldIsSigned(t *testing.T) {
	key := rsaKey(t)
	s, base, _ := newSample(t, Options{SignedURLKeys: map[string]*rsa.PublicKey{"K1": &key.PublicKey}, URLSigner: &URLSigner{KeyPairID: "K1", Key: key, TTL: time.Hour}})
	_ = s
	_, body := rawGet(t, base, "GET", "/package?cpuArch=armv8&payloadType=metadataOnly", nil)
	d, err := decodeDetailsString(string(body))
	if err != nil {
		t.Fatal(err)
	}
	dl := d.Entries["os_armv8"].Download
	if !strings.Contains(dl, "Signature=") {
		t.Fatalf("download not signed: %s", dl)
	}
	if r, _ := httpGet(t, dl); r.StatusCode != 200 {
		t.Fatalf("signed download field refused: %d", r.StatusCode)
	}
}

func TestFaults(t *testing.T) {
	s, base, _ := newSample(t, Options{})
	row := s.Catalog().Rows[0]
	u := base + "/firmware/" + row.Key()
	data, _ := os.ReadFile(row.Path())
	s.SetFaults(Faults{FailStatus: 429, FailCount: 2, RetryAfter: "7"})
	for i := 0; i < 2; i++ {
		if r, _ := httpGet(t, u); r.StatusCode != 429 || r.Header.Get("Retry-After") != "7" {
			t.Fatalf("fail count %d: %d", i, r.StatusCode)
		}
	}
	if r, _ := httpGet(t, u); r.StatusCode != 200 {
		t.Fatalf("after the count: %d", r.StatusCode)
	}
	s.SetFaults(Faults{Flip: true, FlipAt: 100})
	if _, b := httpGet(t, u); b[100] != ^data[100] || string(b[:100]) != string(data[:100]) {
		t.Fatal("byte 100 not flipped")
	}
	s.SetFaults(Faults{CloseAfter: 1000})
	req, _ := http.NewRequest("GET", u, nil)
	if resp, err := http.DefaultTransport.RoundTrip(req); err == nil {
		b, err := io.ReadAll(resp.Body)
		if err == nil || len(b) != 1000 {
			t.Fatalf("close after 1000: read %d bytes, err %v", len(b), err)
		}
	}
	s.SetFaults(Faults{IgnoreRange: true})
	if r, _ := httpGet(t, u, "Range", "bytes=0-9"); r.StatusCode != 200 {
		t.Fatalf("ignore range: %d", r.StatusCode)
	}
	s.SetFaults(Faults{ExtraLength: 10})
	if resp, err := http.DefaultTransport.RoundTrip(req); err == nil {
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Fatal("wrong Content-Length: body read without error")
		}
	}
	s.SetFaults(Faults{FailStatus: 503, FailCount: 1, HTMLErrors: true, PathPrefix: "/package"})
	if r, _ := httpGet(t, u); r.StatusCode != 200 {
		t.Fatalf("path filter: firmware failed")
	}
	if r, _ := httpGet(t, base+gamer); r.StatusCode != 503 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("HTML 503: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	s.SetFaults(Faults{StallAfter: 100})
	ctxReq, _ := http.NewRequest("GET", u, nil)
	c := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := c.Do(ctxReq); err == nil {
		b, err := io.ReadAll(resp.Body)
		if err == nil || len(b) != 100 {
			t.Fatalf("stall: read %d bytes, err %v", len(b), err)
		}
	}
	s.SetFaults(Faults{RateBPS: 20000})
	start := time.Now()
	if _, b := httpGet(t, u); len(b) != len(data) || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("rate cap: %d bytes in %v", len(b), time.Since(start))
	}
	if st := s.Stats(); st.FaultsInjected != 3 || st.RequestsByPath["/firmware"] == 0 {
		t.Fatalf("stats %+v", st)
	}
}
