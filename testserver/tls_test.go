package testserver

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
)

// TestHTTP2LosesLambdaETags shows protocol.md 1.4: over HTTP/2 header names arrive lower-case,
// and the Lambda handler, which reads "If-None-Match" case-sensitively, loses the ETags.
func TestHTTP2LosesLambdaETags(t *testing.T) {
	ca, cert, err := GenerateTLS(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	s, base, _ := newSample(t, Options{Origin: OriginLambda, NoEdge: true, TLS: &TLSOptions{Cert: cert, HTTP2: true}})
	base = strings.Replace(base, "http://", "https://", 1)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	md5 := s.Catalog().Rows[1].MD5 // os_armv8 prod
	for _, c := range []struct {
		h2   bool
		want int
	}{{false, 304}, {true, 200}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: c.h2}
		if !c.h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		req, _ := http.NewRequest("GET", base+"/package?cpuArch=armv8&payloadType=metadataOnly", nil)
		req.Header.Set("If-None-Match", md5)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want || (resp.ProtoMajor == 2) != c.h2 {
			t.Fatalf("HTTP/%d: status %d, want %d", resp.ProtoMajor, resp.StatusCode, c.want)
		}
	}
}
