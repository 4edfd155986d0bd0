// Package trust is whom the agent believes: the release keys and their rotation
// (ota-keys.release), the signed time (ota-timestamp.release), each release's statement, and
// the clock floor those signed times raise.
package trust

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Verifier decides what may be installed: the key set held (trust.keys, later one adopted
// from ota-keys.release), the freshness of ota-timestamp.release, and each release's
// statement and bytes.
type Verifier struct {
	Keys  []ed25519.PublicKey // trust.keys
	Cfg   *config.Config
	HTTP  *http.Client
	Log   *slog.Logger
	Clock *Clock
	// FirmwareURL is where the firmware CDN serves a release's binary, or a file beside it
	// (suffix: ".release").
	FirmwareURL func(app string, e packaging.Entry, suffix string) (string, error)
}

// The trust documents beside the releases on the firmware CDN (protocol.md 3.5, docs/security.md).
const (
	keysDoc  = "ota-keys.release"
	stampDoc = "ota-timestamp.release"
)

// Base is the firmware CDN base the bucket-level trust documents come from: the first
// of server.firmware by bucket name ("" when none is configured).
func (a *Verifier) Base() string {
	buckets := make([]string, 0, len(a.Cfg.Server.Firmware))
	for b := range a.Cfg.Server.Firmware {
		buckets = append(buckets, b)
	}
	if len(buckets) == 0 {
		return ""
	}
	sort.Strings(buckets)
	return a.Cfg.Server.Firmware[buckets[0]]
}

// KeySet is what statements are checked against: the key set adopted from ota-keys.release,
// else trust.keys with trust.threshold (version 0).
func (a *Verifier) KeySet(db *store.DB) packaging.KeySet {
	base := packaging.NewKeySet(0, a.Cfg.Trust.Threshold, a.Keys...)
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

func (a *Verifier) trustRecord(db *store.DB) *store.Trust {
	if t, _ := db.Trust(); t != nil {
		return t
	}
	return &store.Trust{}
}

// RefreshKeys fetches ota-keys.release when due (trust.keys_refresh) or when forced (a
// statement named an unknown key) and adopts every newer version that chains from the set
// held; it returns the set now held.
func (a *Verifier) RefreshKeys(ctx context.Context, db *store.DB, force bool) (packaging.KeySet, error) {
	held := a.KeySet(db)
	base := a.Base()
	if base == "" || len(a.Keys) == 0 {
		return held, nil
	}
	t := a.trustRecord(db)
	now := a.Clock.Now()
	if !force && (a.Cfg.Trust.KeysRefresh == 0 || !t.KeysChecked.IsZero() && now.Sub(t.KeysChecked) < a.Cfg.Trust.KeysRefresh) {
		return held, nil
	}
	body, etag, same, err := transport.FetchSmall(ctx, a.HTTP, base+keysDoc, t.KeysETag, packaging.MaxKeysFile)
	t.KeysChecked = now
	if same || errors.Is(err, transport.ErrNotPublished) {
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
		a.Log.Warn("adopted a new release key set", "version", next.Version, "from_version", held.Version, "keys", strings.Join(next.IDs(), ","), "threshold", next.Threshold, "no_longer_trusted", strings.Join(gone, ","))
	}
	if serr := db.SetTrust(t); serr != nil {
		return next, serr
	}
	if err != nil {
		a.Log.Warn(keysDoc+" refused", "error", err, "holding_version", next.Version)
		return next, fmt.Errorf("%s: %w", keysDoc, err)
	}
	return next, nil
}

// CheckTimestamp fetches ota-timestamp.release (trust.max_staleness > 0): a valid newer one
// is kept and raises the clock floor; an older, expired or badly signed one is refused. It
// warns while the trust is stale.
func (a *Verifier) CheckTimestamp(ctx context.Context, db *store.DB) error {
	base := a.Base()
	if a.Cfg.Trust.MaxStaleness <= 0 || base == "" || len(a.Keys) == 0 {
		return nil
	}
	t := a.trustRecord(db)
	if t.Watching.IsZero() {
		t.Watching = a.Clock.Now()
	}
	t.StampError = ""
	body, etag, same, err := transport.FetchSmall(ctx, a.HTTP, base+stampDoc, t.StampETag, packaging.MaxReleaseFile)
	if err == nil && !same {
		err = a.adoptTimestamp(db, t, body, etag)
	}
	if err != nil {
		t.StampError = fmt.Sprintf("%s: %v", stampDoc, err)
		a.Log.Warn(stampDoc+" refused", "error", err)
	}
	now := a.Clock.Now()
	switch {
	case !t.Expires.IsZero() && now.Before(t.Expires):
		t.FreshAt = now
	case !t.Expires.IsZero() && t.StampError == "":
		t.StampError = fmt.Sprintf("%s expired at %s and no newer one is published", stampDoc, t.Expires.UTC().Format(time.RFC3339))
	}
	if stale, since := a.Stale(t, now); stale {
		a.Log.Warn("trust is stale: no fresh "+stampDoc+" (a frozen mirror or a man in the middle may be hiding releases)", "since", since.UTC().Format(time.RFC3339), "max_staleness", a.Cfg.Trust.MaxStaleness, "error", t.StampError)
	}
	return db.SetTrust(t)
}

func (a *Verifier) adoptTimestamp(db *store.DB, t *store.Trust, body []byte, etag string) error {
	ts, err := packaging.ParseTimestamp(bytes.NewReader(body))
	if err != nil {
		return err
	}
	if err := a.KeySet(db).Check(stampDoc, ts.SignedBytes(), ts.Sigs); err != nil {
		return err
	}
	issued, expires := time.Unix(ts.Issued, 0), time.Unix(ts.Expires, 0)
	if issued.Before(t.Issued) {
		return fmt.Errorf("older than the one held (issued %s, held %s)", issued.UTC().Format(time.RFC3339), t.Issued.UTC().Format(time.RFC3339))
	}
	if !a.Clock.Now().Before(expires) {
		return fmt.Errorf("expired at %s", expires.UTC().Format(time.RFC3339))
	}
	t.Issued, t.Expires, t.StampETag = issued, expires, etag
	a.Clock.Raise(issued) // signed time: a device without a clock learns a floor
	return nil
}

// Stale: freeze detection is on and no unexpired timestamp was held for max_staleness.
func (a *Verifier) Stale(t *store.Trust, now time.Time) (bool, time.Time) {
	if a.Cfg.Trust.MaxStaleness <= 0 || t == nil || t.Watching.IsZero() {
		return false, time.Time{}
	}
	since := t.Watching
	if t.FreshAt.After(since) {
		since = t.FreshAt
	}
	return now.Sub(since) > a.Cfg.Trust.MaxStaleness, since
}

// classFits: a v2 statement was published for a row this device asked for (its channel and
// class match the request's os/cpuArch, an attribute it sent, or a pin).
func classFits(app string, c packaging.Class, f map[string]string) error {
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
