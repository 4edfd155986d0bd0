// Command ota-testserver runs the fake dynamic-OTA deployment (edge + origin + firmware
// CDN) on loopback, and writes sample catalogs. See `ota-testserver help`.
package main

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
	"github.com/spf13/pflag"
)

const usage = `ota-testserver: the fake dynamic-OTA deployment (CloudFront edge, AppRunner or
Lambda@Edge origin, firmware CDN) on loopback, for tests and demos.

usage:
  ota-testserver sample --out DIR [--size BYTES] [--seed N] [--sign-key KEY.pem]
  ota-testserver serve --listen 127.0.0.1:PORT (--catalog DIR | --aws-bucket B --aws-table T
                       [--aws-endpoint URL] [--aws-region R]) [--origin apprunner|lambda]
                       [--no-edge] [--reference-only] [--signed-urls ID=rsa-public.pem]
                       [--url-signing-key ID=rsa-private.pem] [--url-ttl 1h] [fault flags]
                       [--tls (--tls-dir DIR | --cert C --key K) [--client-ca CA.pem] [--http2]]

ota-testserver COMMAND --help lists that command's flags (the fault flags among serve's).
serve: SIGHUP re-reads DIR/catalog.json (or the bucket and the table) and flushes the edge
cache (as an operator's CloudFront invalidation after publishing would); without it the edge
keeps answers up to 100 s (max-age, clamped).
exit codes: 0 ok, 1 failed, 2 usage error
`

// version is set by the Makefile (-X main.version).
var version = "dev"

// errUsage marks a command line that cannot run (exit 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ota-testserver:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
	case "sample":
		return runSample(args[1:], stdout)
	case "serve":
		return runServe(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "ota-testserver", version)
		return nil
	}
	fmt.Fprint(stdout, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// errHelp: the command's --help was printed.
var errHelp = errors.New("help printed")

// parse parses a command's flags; --help prints its usage line, about and flags (errHelp).
func parse(fs *pflag.FlagSet, args []string, synopsis, about string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	help := fs.BoolP("help", "h", false, "this text")
	if err := fs.Parse(args); err != nil && !errors.Is(err, pflag.ErrHelp) {
		return fmt.Errorf("%w: %s: %v (ota-testserver %s --help)", errUsage, fs.Name(), err, fs.Name())
	} else if err != nil || *help {
		fmt.Fprintf(stdout, "usage: ota-testserver %s\n\n%s\n\nflags:\n%s", synopsis, about, fs.FlagUsages())
		return errHelp
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q", errUsage, fs.Name(), fs.Arg(0))
	}
	return nil
}

func runSample(args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("sample", pflag.ContinueOnError)
	out := fs.String("out", "", "directory to write the catalog into")
	size := fs.Int64("size", 10<<20, "bytes per binary")
	seed := fs.Uint64("seed", 1, "random seed: the same seed writes the same bytes")
	key := fs.String("sign-key", "", "Ed25519 private key (PEM) to sign the rows with")
	if err := parse(fs, args, "sample --out DIR [--size BYTES] [--seed N] [--sign-key KEY.pem]",
		"writes the sample catalog (the reference's nine rows, random bytes) into DIR", stdout); err != nil {
		return helped(err)
	}
	if *out == "" {
		return fmt.Errorf("%w: sample: --out DIR is required", errUsage)
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
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
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
	var aws awsFlags
	aws.register(fs)
	f, flipAt := faultFlags(fs)
	if err := parse(fs, args, "serve --listen 127.0.0.1:PORT (--catalog DIR | --aws-bucket B --aws-table T [--aws-endpoint URL]) [flags]",
		"serves the catalog in DIR, or the deployment in an S3 bucket and a DynamoDB table, as the edge, the origin and the firmware CDN, on loopback only; SIGHUP reloads the catalog (reads the deployment again) and flushes the edge", stdout); err != nil {
		return helped(err)
	}
	if (*catDir == "") == !aws.set() {
		return fmt.Errorf("%w: serve: --catalog DIR or --aws-bucket and --aws-table is required (one of them)", errUsage)
	}
	if *flipAt >= 0 {
		f.Flip, f.FlipAt = true, *flipAt
	}
	if err := loopbackOnly(*listen); err != nil {
		return err
	}
	if aws.set() {
		cleanup, err := aws.start(ctx, stdout, catDir)
		if err != nil {
			return err
		}
		defer cleanup()
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
	srv.SetFaults(*f)
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
	defer reloadOnHUP(srv, aws.follow(srv))()
	return srv.Serve(ctx, l)
}

// faultFlags registers the fault knobs of serve (flip-at is -1 when off).
func faultFlags(fs *pflag.FlagSet) (*testserver.Faults, *int64) {
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
	return &f, flipAt
}

// helped turns a printed --help into success.
func helped(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// reloadOnHUP re-reads the catalog on every SIGHUP (after sync, when given, copied the
// deployment again) until the returned stop is called.
func reloadOnHUP(srv *testserver.Server, sync func() error) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if sync != nil {
				if err := sync(); err != nil {
					fmt.Fprintln(os.Stderr, "ota-testserver: reading the deployment failed, the old catalog stays:", err)
					continue
				}
			}
			if err := srv.Reload(); err != nil {
				fmt.Fprintln(os.Stderr, "ota-testserver: reload failed, the old catalog stays:", err)
			} else {
				srv.FlushEdge()
				fmt.Fprintln(os.Stderr, "ota-testserver: catalog reloaded; edge cache flushed (as a CloudFront invalidation would)")
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
