// Command ota-testserver runs the fake dynamic-OTA deployment (edge + origin + firmware
// CDN) on loopback, and writes sample catalogs. See `ota-testserver help`.
package main

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

const usage = `usage:
  ota-testserver sample --out DIR [--size BYTES] [--seed N] [--sign-key KEY.pem]
  ota-testserver serve --listen 127.0.0.1:PORT --catalog DIR [--origin apprunner|lambda]
                       [--no-edge] [--reference-only] [--signed-urls ID=rsa-public.pem]
                       [--url-signing-key ID=rsa-private.pem] [--url-ttl 1h] [fault flags]
                       [--tls (--tls-dir DIR | --cert C --key K) [--client-ca CA.pem] [--http2]]
fault flags (serve): --fault-path PREFIX --latency D --rate BYTES/S --stall-after N
  --close-after N --flip-at N --ignore-range --fail-status CODE --fail-fraction F
  --fail-count N --retry-after S --html-errors --extra-length N
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ota-testserver:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "sample":
		return runSample(args[1:], stdout)
	case "serve":
		return runServe(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stdout, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func runSample(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sample", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write the catalog into")
	size := fs.Int64("size", 10<<20, "bytes per binary")
	seed := fs.Uint64("seed", 1, "random seed: the same seed writes the same bytes")
	key := fs.String("sign-key", "", "Ed25519 private key (PEM) to sign the rows with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("sample: --out DIR is required")
	}
	var priv []byte
	if *key != "" {
		var err error
		if priv, err = os.ReadFile(*key); err != nil {
			return fmt.Errorf("sample: --sign-key: %w", err)
		}
	}
	c, err := testserver.WriteSample(*out, *size, *seed, priv)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d rows of %d bytes to %s (bucket %s)\n", len(c.Rows), *size, *out, c.Bucket)
	return nil
}

func runServe(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "loopback address to listen on")
	catDir := fs.String("catalog", "", "catalog directory (holds catalog.json)")
	origin := fs.String("origin", testserver.OriginAppRunner, "apprunner or lambda")
	noEdge := fs.Bool("no-edge", false, "serve the origin without the CloudFront edge")
	refOnly := fs.Bool("reference-only", false, "send only what the unmodified reference sends")
	signed := fs.String("signed-urls", "", "demand CloudFront signed URLs on /firmware/: KEYPAIR_ID=rsa-public.pem")
	signKey := fs.String("url-signing-key", "", "sign the entries' download URLs: KEYPAIR_ID=rsa-private.pem")
	urlTTL := fs.Duration("url-ttl", time.Hour, "lifetime of signed download URLs")
	useTLS := fs.Bool("tls", false, "serve HTTPS")
	tlsDir := fs.String("tls-dir", "", "with --tls and no --cert: generate a CA, write DIR/ca.pem")
	certFile := fs.String("cert", "", "server certificate (PEM) for --tls")
	keyFile := fs.String("key", "", "server key (PEM) for --tls")
	clientCA := fs.String("client-ca", "", "require client certificates issued by this CA (PEM)")
	http2 := fs.Bool("http2", false, "offer HTTP/2 over TLS (header names arrive lower-case)")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "names in a generated server certificate")
	var f testserver.Faults
	fs.StringVar(&f.PathPrefix, "fault-path", "", "apply faults only to paths with this prefix")
	fs.DurationVar(&f.Latency, "latency", 0, "added latency before each answer")
	fs.Int64Var(&f.RateBPS, "rate", 0, "throughput cap in bytes per second")
	fs.Int64Var(&f.StallAfter, "stall-after", 0, "stop sending after N body bytes")
	fs.Int64Var(&f.CloseAfter, "close-after", 0, "cut the connection after N body bytes")
	flipAt := fs.Int64("flip-at", -1, "invert the body byte at offset N")
	fs.BoolVar(&f.IgnoreRange, "ignore-range", false, "ignore Range and If-Range")
	fs.IntVar(&f.FailStatus, "fail-status", 0, "answer this status (500, 503, 429...)")
	fs.Float64Var(&f.FailFraction, "fail-fraction", 0, "fraction of requests that fail")
	fs.IntVar(&f.FailCount, "fail-count", 0, "the next N requests fail")
	fs.StringVar(&f.RetryAfter, "retry-after", "", "Retry-After sent with failures")
	fs.BoolVar(&f.HTMLErrors, "html-errors", false, "failures as HTML pages")
	fs.Int64Var(&f.ExtraLength, "extra-length", 0, "declare N more bytes of Content-Length than sent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *catDir == "" {
		return errors.New("serve: --catalog DIR is required")
	}
	if *flipAt >= 0 {
		f.Flip, f.FlipAt = true, *flipAt
	}
	if err := loopbackOnly(*listen); err != nil {
		return err
	}
	cat, err := testserver.LoadCatalog(*catDir)
	if err != nil {
		return err
	}
	opts := testserver.Options{Origin: *origin, NoEdge: *noEdge, ReferenceOnly: *refOnly}
	if err := urlSigning(&opts, *signed, *signKey, *urlTTL); err != nil {
		return err
	}
	if *useTLS {
		t, err := tlsOptions(*tlsDir, *certFile, *keyFile, *clientCA, *hosts, *http2)
		if err != nil {
			return err
		}
		opts.TLS = t
	}
	srv, err := testserver.New(cat, opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	srv.SetFaults(f)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	base := "http://" + l.Addr().String()
	if *useTLS {
		base = "https://" + l.Addr().String()
		if *certFile == "" {
			fmt.Fprintf(stdout, "ca        %s\n", filepath.Join(*tlsDir, "ca.pem"))
		}
	}
	fmt.Fprintf(stdout, "endpoint  %s/package (origin %s, edge %v)\nfirmware  %s/firmware/  (bucket %s)\nstats     %s/_stats\n",
		base, *origin, !*noEdge, base, cat.Bucket, base)
	defer reloadOnHUP(srv)()
	return srv.Serve(ctx, l)
}

// reloadOnHUP re-reads the catalog on every SIGHUP until the returned stop is called.
func reloadOnHUP(srv *testserver.Server) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := srv.Reload(); err != nil {
				fmt.Fprintln(os.Stderr, "ota-testserver: reload:", err)
			} else {
				fmt.Fprintln(os.Stderr, "ota-testserver: catalog reloaded")
			}
		}
	}()
	return func() { signal.Stop(hup) }
}

// urlSigning sets up CloudFront signed URLs: demanded on /firmware/ (KEYPAIR_ID=public.pem)
// and made for the entries' download URLs (KEYPAIR_ID=private.pem).
func urlSigning(opts *testserver.Options, signed, signKey string, ttl time.Duration) error {
	if signed != "" {
		id, pemFile, _ := strings.Cut(signed, "=")
		raw, err := os.ReadFile(pemFile)
		if err != nil {
			return fmt.Errorf("--signed-urls: %w", err)
		}
		pub, err := testserver.ParseRSAPublicKeyPEM(raw)
		if err != nil {
			return fmt.Errorf("--signed-urls %s: %w", pemFile, err)
		}
		opts.SignedURLKeys = map[string]*rsa.PublicKey{id: pub}
	}
	if signKey != "" {
		id, pemFile, _ := strings.Cut(signKey, "=")
		raw, err := os.ReadFile(pemFile)
		if err != nil {
			return fmt.Errorf("--url-signing-key: %w", err)
		}
		priv, err := testserver.ParseRSAPrivateKeyPEM(raw)
		if err != nil {
			return fmt.Errorf("--url-signing-key %s: %w", pemFile, err)
		}
		opts.URLSigner = &testserver.URLSigner{KeyPairID: id, Key: priv, TTL: ttl}
	}
	return nil
}

func tlsOptions(dir, certFile, keyFile, clientCA, hosts string, http2 bool) (*testserver.TLSOptions, error) {
	o := &testserver.TLSOptions{HTTP2: http2}
	switch {
	case certFile != "" || keyFile != "":
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		o.Cert = c
	case dir != "":
		_, c, err := testserver.GenerateTLS(dir, strings.Split(hosts, ","))
		if err != nil {
			return nil, err
		}
		o.Cert = c
	default:
		return nil, errors.New("--tls needs --tls-dir DIR (a generated CA) or --cert and --key")
	}
	if clientCA != "" {
		raw, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("--client-ca %s: no PEM certificate", clientCA)
		}
		o.ClientCA = pool
	}
	return o, nil
}

// loopbackOnly refuses to listen anywhere but loopback: this is a test fixture.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: only loopback addresses (127.0.0.0/8, ::1) are allowed", addr)
	}
	return nil
}
