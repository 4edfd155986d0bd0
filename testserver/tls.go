package testserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
)

// TestCA is a certificate authority made for one test run: it issues the server's
// certificate (and client certificates for mTLS tests).
type TestCA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewTestCA makes a CA valid from notBefore for lifetime.
func NewTestCA(name string, notBefore time.Time, lifetime time.Duration) (*TestCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notBefore.Add(lifetime), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return &TestCA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issue makes a leaf certificate for hosts (server) or for a client name (client).
func (ca *TestCA) Issue(hosts []string, client bool, notBefore time.Time, lifetime time.Duration) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: notBefore, NotAfter: notBefore.Add(lifetime), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	return c, certPEM, keyPEM, err
}

// TLSOptions configure HTTPS serving.
type TLSOptions struct {
	Cert     tls.Certificate
	ClientCA *x509.CertPool // when set, a client certificate it issued is required
	HTTP2    bool           // offer h2 (header names arrive lower-case: protocol.md 1.4)
}

// Config is the server-side TLS configuration.
func (o TLSOptions) Config() *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{o.Cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if o.HTTP2 {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	if o.ClientCA != nil {
		c.ClientCAs, c.ClientAuth = o.ClientCA, tls.RequireAndVerifyClientCert
	}
	return c
}

// GenerateTLS makes a CA and a server certificate for hosts, writes DIR/ca.pem, and returns
// the server side.
func GenerateTLS(dir string, hosts []string) (*TestCA, tls.Certificate, error) {
	// Valid from well before any build of the agent, like a CDN certificate months old:
	// a device booting in 1970 checks it at its time floor (the build time).
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewTestCA("ota-testserver CA", now, 10*365*24*time.Hour)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	cert, _, _, err := ca.Issue(hosts, false, now, 5*365*24*time.Hour)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, tls.Certificate{}, err
	}
	if err := atomicfile.Write(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("write ca.pem: %w", err)
	}
	return ca, cert, nil
}
