package transport

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/fault"
)

// ErrPinMismatch: no certificate of the verified chain has a configured SPKI pin.
var ErrPinMismatch = errors.New("no certificate in the server's chain matches server.pin_sha256")

// SPKIPin is the base64 SHA-256 of a certificate's SubjectPublicKeyInfo (HPKP's pin-sha256).
func SPKIPin(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:])
}

// tlsConfig: TLS 1.2 minimum, optional CA bundle replacing the system roots, SPKI pins
// checked on every connection (any pin of the chain: configure a backup), optional client
// certificate. There is no switch to skip verification.
func tlsConfig(o ClientOptions) (*tls.Config, error) {
	// The session cache lets the daemon resume TLS sessions between checks (fewer bytes and
	// round trips on a metered link).
	c := &tls.Config{MinVersion: tls.VersionTLS12, Time: o.Now, ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: server.ca_file: %v", fault.ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: server.ca_file %s holds no PEM certificate", fault.ErrConfig, o.CAFile)
		}
		c.RootCAs = pool
	}
	if len(o.Pins) > 0 {
		pins := map[string]bool{}
		for _, p := range o.Pins {
			if raw, err := base64.StdEncoding.DecodeString(p); err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("%w: server.pin_sha256 %q is not base64 of 32 bytes (openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)", fault.ErrConfig, p)
			}
			pins[p] = true
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				for _, cert := range chain {
					if pins[SPKIPin(cert)] {
						return nil
					}
				}
			}
			return ErrPinMismatch
		}
	}
	if o.ClientCert != "" || o.ClientKey != "" {
		if o.ClientCert == "" || o.ClientKey == "" {
			return nil, fmt.Errorf("%w: server.client_cert and server.client_key go together", fault.ErrConfig)
		}
		fi, err := os.Stat(o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("%w: server.client_key: %v", fault.ErrConfig, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%w: server.client_key %s is readable by others (mode %04o): chmod 600 it", fault.ErrConfig, o.ClientKey, fi.Mode().Perm())
		}
		cert, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			// the message never includes the key material
			return nil, fmt.Errorf("%w: server.client_cert / client_key do not load as a pair: %v", fault.ErrConfig, err)
		}
		// Always present it (Go would otherwise send none when the server's list of acceptable
		// CAs does not name its issuer), so the server's refusal is explicit.
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return c, nil
}

// explain turns transport errors into causes a person can act on; trust failures wrap
// fault.ErrRejected (not retried soon), the rest stay network errors.
func explain(err error, u *url.URL, proxy *url.URL, now time.Time) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	s := err.Error()
	switch {
	case errors.Is(err, ErrPinMismatch):
		return fmt.Errorf("%w: %s: %v", fault.ErrRejected, u.Host, ErrPinMismatch)
	case errors.As(err, &unknown):
		return fmt.Errorf("%w: %s: the server's certificate is signed by an unknown CA (%s): set server.ca_file to the CA that issued it", fault.ErrRejected, u.Host, issuer(unknown.Cert))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		c := invalid.Cert
		if now.Before(c.NotBefore) {
			return fmt.Errorf("%w: %s: certificate not valid before %s but the device time is %s: the clock is behind (and older than the time floor)", fault.ErrRejected, u.Host, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("%w: %s: the server's certificate expired at %s (device time %s)", fault.ErrRejected, u.Host, c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.As(err, &host):
		return fmt.Errorf("%w: %s: %v", fault.ErrRejected, u.Host, host)
	case strings.Contains(s, "remote error: tls: certificate required"):
		return fmt.Errorf("%w: %s requires a client certificate: set server.client_cert and server.client_key", fault.ErrRejected, u.Host)
	case strings.Contains(s, "remote error: tls: bad certificate"), strings.Contains(s, "remote error: tls: unknown certificate authority"), strings.Contains(s, "remote error: tls: expired certificate"):
		return fmt.Errorf("%w: %s rejected the client certificate (server.client_cert): %v", fault.ErrRejected, u.Host, err)
	case proxy != nil && strings.Contains(s, "proxyconnect"):
		return fmt.Errorf("%w: proxy %s unreachable: %v", fault.ErrUnavailable, proxy.Redacted(), err)
	case proxy != nil && u.Scheme == "https" && !strings.Contains(s, "tls:") && !strings.Contains(s, "x509"):
		return fmt.Errorf("%w: via proxy %s: %v (the proxy refused the CONNECT or the connection)", fault.ErrUnavailable, proxy.Redacted(), err)
	}
	return err
}

func issuer(c *x509.Certificate) string {
	if c == nil {
		return "unknown issuer"
	}
	return "issued by " + c.Issuer.String()
}
