package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Payload modes.
const (
	modeFull     = "full"
	modeMetadata = "metadata"
)

// etags is the If-None-Match value: the MD5 of every installed binary, from the database
// (never re-hashed), plus refused releases so the server leaves them out.
func etags(installed map[string]store.App, refused map[string]store.Refusal) string {
	var md5s []string
	for _, a := range installed {
		md5s = append(md5s, a.MD5)
	}
	for m := range refused {
		md5s = append(md5s, m)
	}
	return packaging.SortedMD5s(md5s)
}

// answer is the endpoint's reply: 200 (body open), 304, or 405.
type answer struct {
	status int
	resp   *http.Response
}

// ask sends the canonical request and classifies every status but 200, 304 and 405.
func (a *Agent) ask(ctx context.Context, query, inm string) (*answer, error) {
	u, err := url.Parse(a.cfg.Server.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: server.url: %v", ErrConfig, err)
	}
	u.RawQuery = query
	if err := checkRequestSize(u, inm); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if inm != "" {
		req.Header["If-None-Match"] = []string{inm} // exactly this spelling (protocol.md 1.4)
	}
	a.log.Debug("request", "url", u.String(), "etags", strings.Count(inm, ",")+min(len(inm), 1))
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, netError(u.Redacted(), err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := notAPage(resp, u.Redacted()); err != nil {
			resp.Body.Close()
			return nil, err
		}
		return &answer{status: resp.StatusCode, resp: resp}, nil
	case http.StatusNotModified, http.StatusMethodNotAllowed:
		return &answer{status: resp.StatusCode, resp: resp}, nil
	}
	defer resp.Body.Close()
	return nil, statusError(resp, u.Redacted())
}

// notAPage: a 200 that is a web page is the network's doing (a captive portal, a proxy's
// login or error page), not the server's answer: try later (exit 3), nothing is rejected.
func notAPage(resp *http.Response, what string) error {
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(ct, "text/html") && !strings.HasPrefix(ct, "application/xhtml") {
		return nil
	}
	return fmt.Errorf("%w: %s: the server answered text/html (a captive portal or a proxy's page?), not an update: check the network", ErrUnavailable, what)
}

// netError classes a failed request: trust and configuration errors keep their class,
// everything else is the network's (try later).
func netError(what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // what already names the URL
	}
	if le := localError(what, err); le != nil {
		return le
	}
	if errors.Is(err, ErrRejected) || errors.Is(err, ErrConfig) || errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

// statusError turns an unwanted status into an error a person can act on.
func statusError(resp *http.Response, what string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
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
		return &RetryError{Err: fmt.Errorf("%w: %v", ErrUnavailable, base), After: retryAfter(resp.Header.Get("Retry-After"))}
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

// payloadMode decides full or metadata for this check.
func (a *Agent) payloadMode(db *store.DB) string {
	switch a.cfg.Server.Payload {
	case "full":
		return modeFull
	case "metadata":
		return modeMetadata
	}
	if m, _ := db.Mode(a.cfg.Server.URL); m == modeMetadata {
		return modeMetadata
	}
	return modeFull
}

func payloadParam(mode string) string {
	if mode == modeMetadata {
		return "metadataonly"
	}
	return "fullpayload"
}

// fetchAnswer asks in the current mode; in auto mode a 405 switches to metadata for good.
func (a *Agent) fetchAnswer(ctx context.Context, db *store.DB, facts Facts, inm, mode string, dry bool) (*answer, string, error) {
	ans, err := a.ask(ctx, facts.Query(payloadParam(mode)), inm)
	if err != nil {
		return nil, mode, err
	}
	if ans.status == http.StatusMethodNotAllowed {
		body, _ := io.ReadAll(io.LimitReader(ans.resp.Body, maxErrorBody))
		ans.resp.Body.Close()
		if mode != modeFull || a.cfg.Server.Payload != "auto" {
			return nil, mode, fmt.Errorf("server answered 405 to a %s request: %s (set server.payload: auto or metadata)", mode, bytes.TrimSpace(body))
		}
		a.log.Info("server has no full payloads (405); using metadata mode from now on", "server", a.cfg.Server.URL)
		if !dry {
			if err := db.SetMode(a.cfg.Server.URL, modeMetadata); err != nil {
				return nil, mode, err
			}
		}
		return a.fetchAnswer(ctx, db, facts, inm, modeMetadata, dry)
	}
	return ans, mode, nil
}

// firmwareURL maps an entry to where its binary (or suffix, e.g. ".release") can be fetched:
// the entry's download URL, else server.firmware[bucket] + key (protocol.md 3.4).
func (a *Agent) firmwareURL(app string, e packaging.Entry, suffix string) (string, error) {
	if e.Download != "" && suffix == "" {
		// The field is not signed: only https (http to loopback, for tests) is followed, so a
		// hostile answer cannot make the device fetch from its local network in the clear.
		u, err := url.Parse(e.Download)
		if err == nil && (u.Scheme == "https" || u.Scheme == "http" && transport.IsLoopback(u.Hostname())) && u.Host != "" {
			return e.Download, nil
		}
		a.log.Warn("ignoring a download URL that is not https", "app", app, "url", transport.Redact(e.Download))
	}
	rest, ok := strings.CutPrefix(e.URL, "s3://")
	bucket, key, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || key == "" {
		return "", fmt.Errorf("%s: url %q is not s3://bucket/key and the entry has no download URL", app, e.URL)
	}
	base, ok := a.cfg.Server.Firmware[bucket]
	if !ok {
		known := make([]string, 0, len(a.cfg.Server.Firmware))
		for b := range a.cfg.Server.Firmware {
			known = append(known, b)
		}
		sort.Strings(known)
		return "", fmt.Errorf("%w: %s is in bucket %q but server.firmware maps only %v: add `%s: https://<firmware CDN>/`", ErrConfig, app, bucket, known, bucket)
	}
	return base + key + suffix, nil
}
