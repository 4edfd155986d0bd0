package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/testserver"
)

var certFrom = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// tlsEnv serves the catalog over HTTPS with a certificate for 127.0.0.1 and ota.test.
func tlsEnv(t *testing.T, clientCA *x509.CertPool, leafLife time.Duration) (*env, *testserver.TestCA) {
	ca, err := testserver.NewTestCA("test CA", certFrom, 20*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, _, err := ca.Issue([]string{"127.0.0.1", "ota.test"}, false, certFrom, leafLife)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testserver.Options{TLS: &testserver.TLSOptions{Cert: cert, ClientCA: clientCA}})
	e.base = strings.Replace(e.base, "http://", "https://", 1)
	os.WriteFile(filepath.Join(e.dir, "ca.pem"), ca.CertPEM, 0o644)
	return e, ca
}

func (e *env) tlsConfig(extra string) *Config {
	ca := "  ca_file: " + filepath.Join(e.dir, "ca.pem") + "\n"
	if strings.Contains(extra, "ca_file:") {
		ca = ""
	}
	return e.config("server:\n  url: " + e.base + "/package\n" + ca + "  firmware: {" + e.cat.Bucket + ": " + e.base + "/firmware/}\n" + extra)
}

func TestHTTPSTrust(t *testing.T) {
	e, ca := tlsEnv(t, nil, 10*365*24*time.Hour)
	other, _ := testserver.NewTestCA("other CA", certFrom, 20*365*24*time.Hour)
	os.WriteFile(filepath.Join(e.dir, "other.pem"), other.CertPEM, 0o644)
	caPin := testserverPin(ca.Cert)
	cases := []struct {
		name, extra string
		want        error
		msg         string
	}{
		{"wrong CA", "  ca_file: " + filepath.Join(e.dir, "other.pem") + "\n", ErrRejected, "unknown CA"},
		{"system roots only", "  ca_file: \"\"\n", ErrRejected, "unknown CA"},
		{"pin mismatch", "  pin_sha256: [" + testserverPin(other.Cert) + "]\n", ErrRejected, "pin_sha256"},
		{"right CA, metadata over HTTPS with a CA pin and a backup pin", "  payload: metadata\n  pin_sha256: [" + testserverPin(other.Cert) + ", " + caPin + "]\n", nil, ""},
		{"right CA", "", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := e.tlsConfig(c.extra)
			cfg.StateDir = filepath.Join(e.dir, "state-"+strings.ReplaceAll(c.name, " ", "-"))
			res, err := e.check(cfg)
			if c.want == nil {
				if err != nil || res.Result != ResultUpdated {
					t.Fatalf("%+v %v", res, err)
				}
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

func testserverPin(c *x509.Certificate) string { return transport.SPKIPin(c) }

func TestMutualTLS(t *testing.T) {
	clientCA, _ := testserver.NewTestCA("client CA", certFrom, 20*365*24*time.Hour)
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	e, _ := tlsEnv(t, pool, 10*365*24*time.Hour)
	_, certPEM, keyPEM, _ := clientCA.Issue([]string{"device-0001"}, true, certFrom, 10*365*24*time.Hour)
	strange, _ := testserver.NewTestCA("stranger", certFrom, 20*365*24*time.Hour)
	_, badCert, badKey, _ := strange.Issue([]string{"device-0002"}, true, certFrom, 10*365*24*time.Hour)
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(e.dir, name)
		os.WriteFile(p, b, mode)
		os.Chmod(p, mode)
		return p
	}
	cert, key := write("dev.crt", certPEM, 0o644), write("dev.key", keyPEM, 0o600)
	bcert, bkey := write("bad.crt", badCert, 0o644), write("bad.key", badKey, 0o600)
	loose := write("loose.key", keyPEM, 0o644)

	if _, err := e.check(e.tlsConfig("")); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "requires a client certificate") {
		t.Fatalf("no client certificate: %v", err)
	}
	if _, err := e.check(e.tlsConfig("  client_cert: " + bcert + "\n  client_key: " + bkey + "\n")); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "rejected the client certificate") {
		t.Fatalf("foreign client certificate: %v", err)
	}
	cfg := e.tlsConfig("  client_cert: " + cert + "\n  client_key: " + loose + "\n")
	if _, err := New(cfg, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("world-readable key: %v", err)
	}
	if res, err := e.check(e.tlsConfig("  client_cert: " + cert + "\n  client_key: " + key + "\n")); err != nil || res.Result != ResultUpdated {
		t.Fatalf("mTLS: %+v %v", res, err)
	}
}

func TestThroughConnectProxy(t *testing.T) {
	e, _ := tlsEnv(t, nil, 10*365*24*time.Hour)
	addr := strings.TrimPrefix(e.base, "https://")
	_, port, _ := net.SplitHostPort(addr)
	proxy, err := testserver.NewConnectProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	// ota.test is never resolved here: the proxy dials for the agent.
	named := "https://ota.test:" + port
	cfg := e.config("server:\n  url: " + named + "/package\n  payload: metadata\n  ca_file: " + filepath.Join(e.dir, "ca.pem") +
		"\n  proxy: " + proxy.URL() + "\n  firmware: {" + e.cat.Bucket + ": " + named + "/firmware/}\n")
	res, err := e.check(cfg)
	if err != nil || res.Result != ResultUpdated {
		t.Fatalf("through the proxy: %+v %v", res, err)
	}
	// ota.test resolves nowhere here: the endpoint and the firmware CDN were only reachable
	// through the proxy's tunnel.
	if proxy.Connects.Load() < 1 || e.srv.Stats().BytesByPath["/firmware"] == 0 {
		t.Fatalf("%d CONNECTs, %d firmware bytes", proxy.Connects.Load(), e.srv.Stats().BytesByPath["/firmware"])
	}
	proxy.Refuse.Store(true)
	cfg.Server.Proxy = proxy.URL()
	cfg.StateDir = filepath.Join(e.dir, "state2")
	if _, err := e.check(cfg); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "proxy") {
		t.Fatalf("refusing proxy: %v", err)
	}
}

// TestClockIn1970: a device without an RTC still verifies certificates (at its time floor)
// and installs; the floor then rises to the authenticated server's Date.
func TestClockIn1970(t *testing.T) {
	e, _ := tlsEnv(t, nil, 10*365*24*time.Hour)
	a := e.agent(e.tlsConfig(""))
	a.Now = func() time.Time { return time.Unix(0, 0) }
	res, err := a.Check(context.Background(), CheckOptions{})
	if err != nil || res.Result != ResultUpdated {
		t.Fatalf("1970 clock: %+v %v", res, err)
	}
	db, _ := a.OpenDBReadOnly()
	floor, _ := db.TimeFloor()
	if time.Since(floor) > time.Hour {
		t.Fatalf("time floor %v not raised to the server's Date", floor)
	}
	if c, _ := db.LastCheck(); c.Time.Year() < 2026 {
		t.Fatalf("check recorded at %v: the floor was not applied", c.Time)
	}
}

func TestExpiredServerCertificate(t *testing.T) {
	e, _ := tlsEnv(t, nil, 24*time.Hour) // expired since 2025-01-02
	_, err := e.check(e.tlsConfig(""))
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "expired at 2025-01-02") {
		t.Fatalf("expired certificate: %v", err)
	}
}
