package trust

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Verify decides whether the bytes received for app may be installed (protocol.md 3.3): size,
// SHA-256 and MD5 as claimed; with trust keys, an Ed25519 statement (inline or the published
// .release) signed by a threshold of the key set held (trust.go) that covers exactly those
// bytes, this app and version, a serial not lower than the installed one's and, for a v2
// statement, a channel and class this device asked for (facts). It returns the record.
func (a *Verifier) Verify(ctx context.Context, db *store.DB, facts map[string]string, app string, e packaging.Entry, got packaging.Digests, have *store.App) (store.App, error) {
	rec := store.App{Version: e.LatestVersion, MD5: got.MD5, SHA256: got.SHA256, Size: got.Size}
	reject := func(format string, args ...any) (store.App, error) {
		return store.App{}, fmt.Errorf("%w: %s %s: %s", fault.ErrRejected, app, e.LatestVersion, fmt.Sprintf(format, args...))
	}
	wrongBytes := func(format string, args ...any) (store.App, error) {
		return store.App{}, fmt.Errorf("%w: %w: %s %s: %s", fault.ErrRejected, ErrWrongBytes, app, e.LatestVersion, fmt.Sprintf(format, args...))
	}
	if err := Matches(e.Size, e.SHA256, e.MD5, got); err != "" {
		return wrongBytes("%s", err)
	}
	if len(a.Keys) == 0 {
		if !a.Cfg.Trust.AllowUnsigned {
			return reject("unsigned releases are refused: configure trust.keys (or set trust.allow_unsigned: true to accept them)")
		}
		if e.SHA256 == "" && e.MD5 == "" {
			a.Log.Warn("no hashes from the server; installing unverified bytes (trust.allow_unsigned)", "app", app, "version", e.LatestVersion, "md5", got.MD5)
		}
		return rec, nil
	}
	st, err := a.Statement(ctx, db, facts, app, e)
	if err != nil {
		return store.App{}, err
	}
	if got.MD5 == "" && st.SHA256 != "" && st.MD5 != "" && got.SHA256 == st.SHA256 {
		// Hashed without MD5 (hashMD5): the signature binds this MD5 to the SHA-256 matched.
		got.MD5, rec.MD5 = st.MD5, st.MD5
		if e.MD5 != "" && e.MD5 != got.MD5 {
			return reject("md5 mismatch: the server claims %s, the signed statement %s", e.MD5, got.MD5)
		}
	}
	if got.MD5 == "" {
		return store.App{}, ErrNeedMD5
	}
	if err := Matches(st.Size, st.SHA256, st.MD5, got); err != "" {
		return wrongBytes("bytes differ from the signed statement: %s", err)
	}
	if have != nil && st.Serial < have.Serial {
		return reject("rollback refused: serial %d is lower than the installed %s's %d", st.Serial, have.Version, have.Serial)
	}
	rec.Serial, rec.Signed = st.Serial, true
	return rec, nil
}

// Statement is app's signed statement, verified before a byte of the release is fetched:
// inline in e or the published .release, signed by a threshold of the key set held (a key
// rotated in is fetched once), of a version trust.min_statement_version allows and, for v2,
// for a channel and class this device asked for (facts). What it says about bytes, serials and
// its ramp is for the caller to hold the release to.
func (a *Verifier) Statement(ctx context.Context, db *store.DB, facts map[string]string, app string, e packaging.Entry) (packaging.Statement, error) {
	reject := func(format string, args ...any) (packaging.Statement, error) {
		return packaging.Statement{}, fmt.Errorf("%w: %s %s: %s", fault.ErrRejected, app, e.LatestVersion, fmt.Sprintf(format, args...))
	}
	st, sigs := e.Statement(app), e.Signatures()
	if len(sigs) == 0 {
		rf, err := a.FetchRelease(ctx, app, e)
		if err != nil {
			return reject("no inline signature and no published statement: %v", err)
		}
		if rf.App != app || rf.Version != e.LatestVersion {
			return reject("published statement is for %s %s", rf.App, rf.Version)
		}
		st, sigs = rf.Statement(), rf.Signatures()
	}
	set := a.KeySet(db)
	err := set.Check(st.What(), st.SignedBytes(), sigs)
	if errors.Is(err, packaging.ErrUnknownKey) && a.Base() != "" {
		// A key this device does not know yet: maybe rotated in. Fetch the key set now.
		if next, rerr := a.RefreshKeys(ctx, db, true); next.Version > set.Version {
			err = next.Check(st.What(), st.SignedBytes(), sigs)
		} else if rerr != nil {
			err = fmt.Errorf("%v (and %v)", err, rerr)
		}
	}
	if err != nil {
		return reject("%v", err)
	}
	if max(st.V, 1) < a.Cfg.Trust.MinStatementVersion {
		return reject("a v1 statement does not name its channel, and trust.min_statement_version is %d", a.Cfg.Trust.MinStatementVersion)
	}
	if st.V >= 2 {
		if err := classFits(app, st.Class, facts); err != nil {
			return reject("%v: refused (mix-and-match across channels)", err)
		}
	}
	return st, nil
}

// HashMD5 tells whether received bytes are hashed with MD5 as well as SHA-256. With trust
// keys every binary needs a signed statement, which names its MD5 (the ETag the device sends
// next time) bound to the SHA-256 verify checks: hashing MD5 too would only cost CPU (MD5 is
// the slower hash). Without keys the MD5 is hashed.
func (a *Verifier) HashMD5() bool { return len(a.Keys) == 0 }

// ErrWrongBytes marks a verification failure of the received bytes themselves (size or
// hash): a transfer damaged on the way as often as a bad release (install.max_attempts
// counts it only when the same bytes fail twice).
var ErrWrongBytes = errors.New("the bytes received are not the release's")

// ErrNeedMD5: the bytes were hashed without MD5 and the statement does not supply it (it
// names no SHA-256 or no MD5); the caller hashes the file with MD5 and verifies again.
var ErrNeedMD5 = errors.New("the received file must be hashed with MD5")

// Matches compares received digests with claimed ones (empty claims are not checked, nor an
// MD5 not hashed: verify takes it from the signed statement).
func Matches(size int64, sha, md5 string, got packaging.Digests) string {
	switch {
	case size != 0 && got.Size != size:
		return fmt.Sprintf("size %d, want %d", got.Size, size)
	case sha != "" && got.SHA256 != sha:
		return fmt.Sprintf("sha256 mismatch: got %s, want %s", got.SHA256, sha)
	case md5 != "" && got.MD5 != "" && got.MD5 != md5:
		return fmt.Sprintf("md5 mismatch: got %s, want %s", got.MD5, md5)
	}
	return ""
}

// FetchRelease gets `<app>_<version>.release` from the firmware CDN (at most 64 KiB).
func (a *Verifier) FetchRelease(ctx context.Context, app string, e packaging.Entry) (*packaging.ReleaseFile, error) {
	u, err := a.FirmwareURL(app, e, ".release")
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, transport.MaxErrorBody))
		return nil, fmt.Errorf("%s answered %s", transport.Redact(u), resp.Status)
	}
	return packaging.ParseReleaseFile(resp.Body)
}
