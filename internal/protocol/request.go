package protocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Payload modes.
const (
	ModeFull     = "full"
	ModeMetadata = "metadata"
)

// Etags is the If-None-Match value: the MD5 of every installed binary, from the database
// (never re-hashed), plus refused releases so the server leaves them out.
func Etags(installed map[string]store.App, refused map[string]store.Refusal) string {
	var md5s []string
	for _, a := range installed {
		md5s = append(md5s, a.MD5)
	}
	for m := range refused {
		md5s = append(md5s, m)
	}
	return packaging.SortedMD5s(md5s)
}

// Client asks the endpoint: the canonical request and its answers (protocol.md 1, 3).
type Client struct {
	Cfg  *config.Config
	HTTP *http.Client
	Log  *slog.Logger
	// LoopbackHTTP follows a plain-http download URL to a loopback host (test builds and
	// in-process tests only).
	LoopbackHTTP bool
}

// Answer is the endpoint's reply: 200 (body open), 304, or 405.
type Answer struct {
	Status int
	Resp   *http.Response
}

// Ask sends the canonical request and classifies every status but 200, 304 and 405.
func (a *Client) Ask(ctx context.Context, query, inm string) (*Answer, error) {
	u, err := url.Parse(a.Cfg.Server.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: server.url: %v", fault.ErrConfig, err)
	}
	u.RawQuery = query
	if err := CheckRequestSize(u, inm); err != nil {
		return nil, fmt.Errorf("%w: %v", fault.ErrConfig, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if inm != "" {
		req.Header["If-None-Match"] = []string{inm} // exactly this spelling (protocol.md 1.4)
	}
	a.Log.Debug("request", "url", u.String(), "Etags", strings.Count(inm, ",")+min(len(inm), 1))
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return nil, NetError(u.Redacted(), err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := NotAPage(resp, u.Redacted()); err != nil {
			resp.Body.Close()
			return nil, err
		}
		return &Answer{Status: resp.StatusCode, Resp: resp}, nil
	case http.StatusNotModified, http.StatusMethodNotAllowed:
		return &Answer{Status: resp.StatusCode, Resp: resp}, nil
	}
	defer resp.Body.Close()
	return nil, statusError(resp, u.Redacted())
}

// NotAPage: a 200 that is a web page is the network's doing (a captive portal, a proxy's
// login or error page), not the server's answer: try later (exit 3), nothing is rejected.
func NotAPage(resp *http.Response, what string) error {
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(ct, "text/html") && !strings.HasPrefix(ct, "application/xhtml") {
		return nil
	}
	return fmt.Errorf("%w: %s: the server answered text/html (a captive portal or a proxy's page?), not an update: check the network", fault.ErrUnavailable, what)
}

// NetError classes a failed request: trust and configuration errors keep their class,
// everything else is the network's (try later). A transfer that writes to the disk tells a
// full disk apart first (delivery).
func NetError(what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // what already names the URL
	}
	if errors.Is(err, fault.ErrRejected) || errors.Is(err, fault.ErrConfig) || errors.Is(err, fault.ErrUnavailable) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", fault.ErrUnavailable, what, err)
}

// statusError turns an unwanted status into an error a person can act on.
func statusError(resp *http.Response, what string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, transport.MaxErrorBody))
	msg := strings.TrimSpace(string(body))
	var j struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &j) == nil && j.Error != "" {
		msg = j.Error
	} else if strings.Contains(strings.ToLower(resp.Header.Get("Content-Type")), "html") {
		msg = "an HTML error page"
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	base := fmt.Errorf("%s answered %s: %s", what, resp.Status, msg)
	switch s := resp.StatusCode; {
	case s == 408 || s == 429 || s >= 500:
		return &RetryError{Err: fmt.Errorf("%w: %v", fault.ErrUnavailable, base), After: retryAfter(resp.Header.Get("Retry-After"))}
	case s == 404 && msg == "No deployment package found":
		return fmt.Errorf("%v (nothing is released for these device facts: check device.cpu_arch, device.os and device.attributes)", base)
	case s == 400:
		return fmt.Errorf("%v (the server refused the device facts: check the configuration)", base)
	}
	return base
}

// retryAfter reads the seconds form only: a device clock may be years off, so the date form
// is ignored (design.md, Transport and time). The daemon caps it.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// PayloadMode decides full or metadata for this check.
func (a *Client) PayloadMode(db *store.DB) string {
	switch a.Cfg.Server.Payload {
	case "full":
		return ModeFull
	case "metadata":
		return ModeMetadata
	}
	if m, _ := db.Mode(a.Cfg.Server.URL); m == ModeMetadata {
		return ModeMetadata
	}
	return ModeFull
}

func PayloadParam(mode string) string {
	if mode == ModeMetadata {
		return "metadataonly"
	}
	return "fullpayload"
}

// FetchAnswer asks in the current mode; in auto mode a 405 switches to metadata for good.
func (a *Client) FetchAnswer(ctx context.Context, db *store.DB, facts Facts, inm, mode string, dry bool) (*Answer, string, error) {
	ans, err := a.Ask(ctx, facts.Query(PayloadParam(mode)), inm)
	if err != nil {
		return nil, mode, err
	}
	if ans.Status == http.StatusMethodNotAllowed {
		body, _ := io.ReadAll(io.LimitReader(ans.Resp.Body, transport.MaxErrorBody))
		ans.Resp.Body.Close()
		if mode != ModeFull || a.Cfg.Server.Payload != "auto" {
			return nil, mode, fmt.Errorf("server answered 405 to a %s request: %s (set server.payload: auto or metadata)", mode, bytes.TrimSpace(body))
		}
		a.Log.Info("server has no full payloads (405); using metadata mode from now on", "server", a.Cfg.Server.URL)
		if !dry {
			if err := db.SetMode(a.Cfg.Server.URL, ModeMetadata); err != nil {
				return nil, mode, err
			}
		}
		return a.FetchAnswer(ctx, db, facts, inm, ModeMetadata, dry)
	}
	return ans, mode, nil
}

// FirmwareURL maps an entry to where its binary (or suffix, e.g. ".release") can be fetched:
// the entry's download URL, else server.firmware[bucket] + key (protocol.md 3.4).
func (a *Client) FirmwareURL(app string, e packaging.Entry, suffix string) (string, error) {
	if e.Download != "" && suffix == "" {
		// The field is not signed: only https (http to loopback, for tests) is followed, so a
		// hostile answer cannot make the device fetch from its local network in the clear.
		u, err := url.Parse(e.Download)
		if err == nil && (u.Scheme == "https" || u.Scheme == "http" && a.LoopbackHTTP && transport.IsLoopback(u.Hostname())) && u.Host != "" {
			return e.Download, nil
		}
		a.Log.Warn("ignoring a download URL that is not https", "app", app, "url", transport.Redact(e.Download))
	}
	rest, ok := strings.CutPrefix(e.URL, "s3://")
	bucket, key, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || key == "" {
		return "", fmt.Errorf("%s: url %q is not s3://bucket/key and the entry has no download URL", app, e.URL)
	}
	base, ok := a.Cfg.Server.Firmware[bucket]
	if !ok {
		known := make([]string, 0, len(a.Cfg.Server.Firmware))
		for b := range a.Cfg.Server.Firmware {
			known = append(known, b)
		}
		sort.Strings(known)
		return "", fmt.Errorf("%w: %s is in bucket %q but server.firmware maps only %v: add `%s: https://<firmware CDN>/`", fault.ErrConfig, app, bucket, known, bucket)
	}
	return base + key + suffix, nil
}

// RetryError carries a server's Retry-After.
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string { return e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }
