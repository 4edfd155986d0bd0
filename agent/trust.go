package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// The trust documents beside the releases on the firmware CDN (protocol.md 3.5, docs/security.md).
const (
	keysDoc  = "ota-keys.release"
	stampDoc = "ota-timestamp.release"
)

// trustBase is the firmware CDN base the bucket-level trust documents come from: the first
// of server.firmware by bucket name ("" when none is configured).
func (a *Agent) trustBase() string {
	buckets := make([]string, 0, len(a.cfg.Server.Firmware))
	for b := range a.cfg.Server.Firmware {
		buckets = append(buckets, b)
	}
	if len(buckets) == 0 {
		return ""
	}
	sort.Strings(buckets)
	return a.cfg.Server.Firmware[buckets[0]]
}

// keySet is what statements are checked against: the key set adopted from ota-keys.release,
// else trust.keys with trust.threshold (version 0).
func (a *Agent) keySet(db *store.DB) packaging.KeySet {
	base := packaging.NewKeySet(0, a.cfg.Trust.Threshold, a.keys...)
	if db == nil {
		return base
	}
	t, _ := db.Trust()
	if t == nil || len(t.KeySet) == 0 {
		return base
	}
	var s packaging.SignedKeySet
	if json.Unmarshal(t.KeySet, &s) != nil {
		return base
	}
	if set, err := s.Set(); err == nil {
		return set
	}
	return base
}

func (a *Agent) trustRecord(db *store.DB) *store.Trust {
	if t, _ := db.Trust(); t != nil {
		return t
	}
	return &store.Trust{}
}

// errNotPublished: the document is not on the CDN (404), which is not an error.
var errNotPublished = errors.New("not published")

// fetchDoc gets a small trust document with If-None-Match: same is true on a 304.
func (a *Agent) fetchDoc(ctx context.Context, u, etag string, limit int64) (body []byte, newETag string, same bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", false, err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, "", false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, true, nil
	case http.StatusOK:
		body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err == nil && int64(len(body)) > limit {
			err = fmt.Errorf("%s: larger than %d bytes", redact(u), limit)
		}
		return body, resp.Header.Get("ETag"), false, err
	case http.StatusNotFound, http.StatusForbidden: // S3 without list permission answers 403
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil, "", false, errNotPublished
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return nil, "", false, fmt.Errorf("%s answered %s", redact(u), resp.Status)
}

// refreshKeys fetches ota-keys.release when due (trust.keys_refresh) or when forced (a
// statement named an unknown key) and adopts every newer version that chains from the set
// held; it returns the set now held.
func (a *Agent) refreshKeys(ctx context.Context, db *store.DB, force bool) (packaging.KeySet, error) {
	held := a.keySet(db)
	base := a.trustBase()
	if base == "" || len(a.keys) == 0 {
		return held, nil
	}
	t := a.trustRecord(db)
	now := a.now(db)
	if !force && (a.cfg.Trust.KeysRefresh == 0 || !t.KeysChecked.IsZero() && now.Sub(t.KeysChecked) < a.cfg.Trust.KeysRefresh) {
		return held, nil
	}
	body, etag, same, err := a.fetchDoc(ctx, base+keysDoc, t.KeysETag, packaging.MaxKeysFile)
	t.KeysChecked = now
	if same || errors.Is(err, errNotPublished) {
		return held, db.SetTrust(t)
	}
	if err != nil {
		return held, fmt.Errorf("%s: %w", keysDoc, err)
	}
	t.KeysETag = etag
	f, err := packaging.ParseKeysFile(bytes.NewReader(body))
	next := held
	if err == nil {
		next, err = f.Advance(held)
	}
	if next.Version > held.Version {
		for _, v := range f.Versions {
			if v.Version == next.Version {
				t.KeySet, _ = json.Marshal(v)
			}
		}
		var gone []string
		for id := range held.Keys {
			if _, ok := next.Keys[id]; !ok {
				gone = append(gone, id)
			}
		}
		a.log.Warn("adopted a new release key set", "version", next.Version, "from_version", held.Version, "keys", strings.Join(next.IDs(), ","), "threshold", next.Threshold, "no_longer_trusted", strings.Join(gone, ","))
	}
	if serr := db.SetTrust(t); serr != nil {
		return next, serr
	}
	if err != nil {
		a.log.Warn(keysDoc+" refused", "error", err, "holding_version", next.Version)
		return next, fmt.Errorf("%s: %w", keysDoc, err)
	}
	return next, nil
}

// checkTimestamp fetches ota-timestamp.release (trust.max_staleness > 0): a valid newer one
// is kept and raises the clock floor; an older, expired or badly signed one is refused. It
// warns while the trust is stale.
func (a *Agent) checkTimestamp(ctx context.Context, db *store.DB) error {
	base := a.trustBase()
	if a.cfg.Trust.MaxStaleness <= 0 || base == "" || len(a.keys) == 0 {
		return nil
	}
	t := a.trustRecord(db)
	if t.Watching.IsZero() {
		t.Watching = a.now(db)
	}
	t.StampError = ""
	body, etag, same, err := a.fetchDoc(ctx, base+stampDoc, t.StampETag, packaging.MaxReleaseFile)
	if err == nil && !same {
		err = a.adoptTimestamp(db, t, body, etag)
	}
	if err != nil {
		t.StampError = fmt.Sprintf("%s: %v", stampDoc, err)
		a.log.Warn(stampDoc+" refused", "error", err)
	}
	now := a.clock.Now()
	switch {
	case !t.Expires.IsZero() && now.Before(t.Expires):
		t.FreshAt = now
	case !t.Expires.IsZero() && t.StampError == "":
		t.StampError = fmt.Sprintf("%s expired at %s and no newer one is published", stampDoc, t.Expires.UTC().Format(time.RFC3339))
	}
	if stale, since := a.stale(t, now); stale {
		a.log.Warn("trust is stale: no fresh "+stampDoc+" (a frozen mirror or a man in the middle may be hiding releases)", "since", since.UTC().Format(time.RFC3339), "max_staleness", a.cfg.Trust.MaxStaleness, "error", t.StampError)
	}
	return db.SetTrust(t)
}

func (a *Agent) adoptTimestamp(db *store.DB, t *store.Trust, body []byte, etag string) error {
	ts, err := packaging.ParseTimestamp(bytes.NewReader(body))
	if err != nil {
		return err
	}
	if err := a.keySet(db).Check(stampDoc, ts.SignedBytes(), ts.Sigs); err != nil {
		return err
	}
	issued, expires := time.Unix(ts.Issued, 0), time.Unix(ts.Expires, 0)
	if issued.Before(t.Issued) {
		return fmt.Errorf("older than the one held (issued %s, held %s)", issued.UTC().Format(time.RFC3339), t.Issued.UTC().Format(time.RFC3339))
	}
	if !a.clock.Now().Before(expires) {
		return fmt.Errorf("expired at %s", expires.UTC().Format(time.RFC3339))
	}
	t.Issued, t.Expires, t.StampETag = issued, expires, etag
	a.clock.raise(issued) // signed time: a device without a clock learns a floor
	return nil
}

// stale: freeze detection is on and no unexpired timestamp was held for max_staleness.
func (a *Agent) stale(t *store.Trust, now time.Time) (bool, time.Time) {
	if a.cfg.Trust.MaxStaleness <= 0 || t == nil || t.Watching.IsZero() {
		return false, time.Time{}
	}
	since := t.Watching
	if t.FreshAt.After(since) {
		since = t.FreshAt
	}
	return now.Sub(since) > a.cfg.Trust.MaxStaleness, since
}

// classFits: a v2 statement was published for a row this device asked for (its channel and
// class match the request's os/cpuArch, an attribute it sent, or a pin).
func classFits(app string, c packaging.Class, f Facts) error {
	ch := strings.ToLower(c.Channel)
	if pin, ok := f[strings.ToLower(app)]; ok {
		if pin == ch {
			return nil
		}
		return fmt.Errorf("statement published for channel %q, and device.pins pins %s to %q (the pin wins over attributes)", ch, app, pin)
	}
	if arch, ok := strings.CutPrefix(app, "os_"); ok {
		if f["os"] == ch && f["cpuarch"] == arch && (c.CPUArch == "" || c.CPUArch == arch) {
			return nil
		}
		return fmt.Errorf("statement published for OS channel %q (cpu_arch %q), this device asked for os=%s cpuArch=%s", ch, c.CPUArch, f["os"], f["cpuarch"])
	}
	var asked []string
	for _, attr := range strings.Split(c.Attrs, ",") {
		if attr != "" && f["attr"+attr] == ch {
			return nil
		}
		if v, ok := f["attr"+attr]; ok {
			asked = append(asked, "attr"+attr+"="+v)
		}
	}
	if len(asked) == 0 {
		asked = append(asked, "none of those attributes")
	}
	return fmt.Errorf("statement published for channel %q (device attributes %q), this device asked for %s", ch, c.Attrs, strings.Join(asked, " "))
}
