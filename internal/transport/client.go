// Package transport is the agent's one HTTP/1.1 client for the endpoint and the firmware
// CDN: bounded waits, a stall timer and a minimum rate on every body, no transparent gzip,
// https-only redirects to known hosts, TLS with optional CA bundle, SPKI pins and a client
// certificate, proxies, and errors a person can act on (design.md, Transport and time).
package transport

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ota-agent/ota-agent/internal/fault"
)

// Network limits (design.md, Transport and time).
const (
	stallTimeout   = 45 * time.Second
	minRateWindow  = 2 * time.Minute
	minRateBytes   = 1 << 10 // per second, averaged over minRateWindow (ClientOptions.MinRate)
	maxRedirects   = 3
	headerTimeout  = 30 * time.Second
	dialTimeout    = 15 * time.Second
	tlsTimeout     = 15 * time.Second
	maxHeaderBytes = 64 << 10
)

// ClientOptions tune the hardened client; zero values take the defaults above.
type ClientOptions struct {
	CAFile        string
	Pins          []string // SPKI SHA-256 pins (base64), any of the chain
	ClientCert    string
	ClientKey     string
	Proxy         string // explicit proxy URL; else HTTPS_PROXY / HTTP_PROXY / NO_PROXY
	StallTimeout  time.Duration
	HeaderTimeout time.Duration    // waiting for the server to start answering
	Now           func() time.Time // for certificate checks (the time floor applies)
	Learn         func(time.Time)  // receives the Date of authenticated HTTPS answers
	RedirectHosts []string         // hosts a redirect may lead to, besides the original one
	Limit         *Limiter         // caps the bytes per second of all bodies together (nil: none)
	MinRate       int64            // bytes per second a body must average over 2 minutes (0: 1 KiB/s)
	UserAgent     string           // sent on every request that has none ("" : ota-agent)
	// LoopbackHTTP lets plain http to a loopback host through where https is required (a
	// redirect): test builds and in-process tests only, never a release build.
	LoopbackHTTP bool
}

// NewHTTPClient returns the one HTTP/1.1 client used for the endpoint and the firmware CDN:
// bounded dial, TLS and header waits, no transparent gzip, a stall timer on every body,
// https-only redirects (http allowed to loopback, for tests), and a capped redirect chain.
func NewHTTPClient(o ClientOptions) (*http.Client, error) {
	tlsConf, err := tlsConfig(o)
	if err != nil {
		return nil, err
	}
	proxy := http.ProxyFromEnvironment
	if o.Proxy != "" {
		pu, err := url.Parse(o.Proxy)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			return nil, fmt.Errorf("%w: server.proxy %q is not an http(s)://host:port URL", fault.ErrConfig, o.Proxy)
		}
		proxy = http.ProxyURL(pu)
	}
	stall := o.StallTimeout
	if stall == 0 {
		stall = stallTimeout
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	tr := &http.Transport{
		Proxy:                  proxy,
		DialContext:            (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:    tlsTimeout,
		ResponseHeaderTimeout:  cmp.Or(o.HeaderTimeout, headerTimeout),
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
		DisableCompression:     true,
		TLSClientConfig:        tlsConf,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxIdleConnsPerHost:    2,
	}
	return &http.Client{
		Transport: &stallTransport{next: tr, stall: stall, proxy: proxy, now: now, learn: o.Learn, limit: o.Limit, minRate: cmp.Or(o.MinRate, minRateBytes),
			userAgent: cmp.Or(o.UserAgent, "ota-agent")},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			if req.URL.Scheme != "https" && !(o.LoopbackHTTP && IsLoopback(req.URL.Hostname())) {
				return fmt.Errorf("refusing redirect to %s: not https", req.URL.Redacted())
			}
			if req.URL.Host != via[0].URL.Host && !slices.Contains(o.RedirectHosts, req.URL.Host) {
				return fmt.Errorf("refusing redirect to %s: not the server's or a firmware CDN's host", req.URL.Redacted())
			}
			return nil
		},
	}, nil
}

// IsLoopback reports a loopback host (localhost or a loopback address).
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrStalled: the body stopped moving, or moved slower than the minimum rate.
var ErrStalled = errors.New("transfer stalled")

// stallTransport cancels a request whose body makes no progress for stall, or averages less
// than minRateBytes/s over minRateWindow ("slow retrieval").
type stallTransport struct {
	next  http.RoundTripper
	stall time.Duration
	proxy func(*http.Request) (*url.URL, error)
	now   func() time.Time
	learn func(time.Time)
	limit *Limiter
	// minRate is the floor a body must average over minRateWindow (slow retrieval).
	minRate   int64
	userAgent string
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.userAgent)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel(nil)
		p, _ := t.proxy(req)
		return nil, explain(err, req.URL, p, t.now())
	}
	if resp.TLS != nil && len(resp.TLS.VerifiedChains) > 0 && t.learn != nil {
		if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			t.learn(d) // an authenticated server's clock
		}
	}
	w := &watchedBody{rc: resp.Body, cancel: cancel, stall: t.stall, start: time.Now(), limit: t.limit, minRate: t.minRate, ctx: ctx}
	w.timer = time.AfterFunc(t.stall, w.fire)
	resp.Body = w
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (t *stallTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type watchedBody struct {
	rc     io.ReadCloser
	cancel context.CancelCauseFunc
	stall  time.Duration
	timer  *time.Timer
	mu     sync.Mutex
	start  time.Time // of the current rate window
	n      int64     // bytes in the current rate window
	err    error
	limit  *Limiter
	// minRate: see stallTransport.
	minRate int64
	ctx     context.Context
}

func (w *watchedBody) fire() {
	w.mu.Lock()
	w.err = fmt.Errorf("%w: no data for %v", ErrStalled, w.stall)
	w.mu.Unlock()
	w.cancel(w.err)
}

func (w *watchedBody) Read(p []byte) (int, error) {
	n, err := w.rc.Read(p)
	if n > 0 && w.limit != nil {
		// Waiting for the bandwidth cap is not a stall: the timer stops meanwhile, and the
		// wait is left out of the rate window.
		w.timer.Stop()
		waited, werr := w.limit.Wait(w.ctx, n)
		w.mu.Lock()
		w.start = w.start.Add(waited)
		w.mu.Unlock()
		if werr != nil {
			return n, werr
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return n, w.err
	}
	if n > 0 {
		w.n += int64(n)
		w.timer.Reset(w.stall)
		floor := w.limit.minRate(time.Now(), w.minRate)
		if el := time.Since(w.start); el > minRateWindow {
			if float64(w.n)/el.Seconds() < float64(floor) {
				w.err = fmt.Errorf("%w: %d bytes in %v, under %d B/s", ErrStalled, w.n, el.Round(time.Second), floor)
				w.cancel(w.err)
				return n, w.err
			}
			w.start, w.n = time.Now(), 0
		}
	}
	return n, err
}

func (w *watchedBody) Close() error {
	w.timer.Stop()
	err := w.rc.Close()
	w.cancel(nil)
	return err
}

// Redact is a URL for messages: without its query (a signed URL's signature stays secret).
func Redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// MaxErrorBody bounds what is read of an error answer.
const MaxErrorBody = 64 << 10
