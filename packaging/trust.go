package packaging

import (
	"cmp"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Signature is one Ed25519 signature and the key id it claims.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Class is what a v2 statement binds besides the bytes (protocol.md 3.5): the row it was
// published for, so that a statement for one channel cannot be replayed on another, and the
// phased rollout it is released by (rollout.go), so that no mirror can change who gets it when.
type Class struct {
	V       int    `json:"v,omitempty"`        // statement version: 0 or 1 = v1, 2 = v2
	Channel string `json:"channel,omitempty"`  // the row's env: prod, beta, ...
	Attrs   string `json:"attrs,omitempty"`    // its deviceAttr names: lower-case, sorted, comma-separated
	CPUArch string `json:"cpu_arch,omitempty"` // os_<arch> rows: the arch
	Ramp    string `json:"ramp,omitempty"`     // v2: a phased rollout, ParseRamp's form ("" = every device at once)
	Halted  int64  `json:"halted,omitempty"`   // v2: the ramp was halted at this unix time (0 = running)
}

// RowClass is the class of a row (app, env, deviceAttr) in v2 form.
func RowClass(app, env string, attrs map[string]bool) Class {
	var names []string
	for n, on := range attrs {
		if on {
			names = append(names, strings.ToLower(n))
		}
	}
	sort.Strings(names)
	c := Class{V: 2, Channel: strings.ToLower(env), Attrs: strings.Join(names, ",")}
	if arch, ok := strings.CutPrefix(app, "os_"); ok {
		c.CPUArch = arch
	}
	return c
}

// ErrThreshold: fewer trusted keys signed than the key set's threshold.
var ErrThreshold = errors.New("not signed by enough trusted keys")

// KeySet is a set of trusted release keys and how many of them must sign.
type KeySet struct {
	Version   int64 // 0: the configured trust.keys
	Threshold int
	Keys      map[string]ed25519.PublicKey // key id → key
}

// NewKeySet makes a key set of keys.
func NewKeySet(version int64, threshold int, keys ...ed25519.PublicKey) KeySet {
	k := KeySet{Version: version, Threshold: max(threshold, 1), Keys: map[string]ed25519.PublicKey{}}
	for _, pub := range keys {
		k.Keys[KeyID(pub)] = pub
	}
	return k
}

// IDs lists the key ids, sorted.
func (k KeySet) IDs() []string {
	ids := make([]string, 0, len(k.Keys))
	for id := range k.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Check wants at least Threshold distinct trusted keys among sigs to have signed msg (what
// is named what: the document, for errors).
func (k KeySet) Check(what string, msg []byte, sigs []Signature) error {
	good, unknown, bad := map[string]bool{}, []string{}, []string{}
	for _, s := range sigs {
		pub, ok := k.Keys[s.KeyID]
		if !ok {
			unknown = append(unknown, s.KeyID)
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil || len(raw) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, raw) {
			bad = append(bad, s.KeyID)
			continue
		}
		good[s.KeyID] = true
	}
	switch {
	case len(good) >= k.Threshold:
		return nil
	case len(bad) > 0:
		return fmt.Errorf("%w: %s (keyid %s)", ErrBadSig, what, strings.Join(bad, ","))
	case len(good) == 0 && len(unknown) > 0:
		return fmt.Errorf("%w: %s: keyid %s (trusted: key set v%d, %s)", ErrUnknownKey, what, strings.Join(unknown, ","), k.Version, strings.Join(k.IDs(), ","))
	}
	return fmt.Errorf("%w: %s: %d valid signature(s) of trusted keys, threshold %d (key set v%d)", ErrThreshold, what, len(good), k.Threshold, k.Version)
}

// SignedKeySet is one version of the published key set (ota-keys.release).
type SignedKeySet struct {
	Version   int64       `json:"version"`
	Threshold int         `json:"threshold"`
	Keys      []string    `json:"keys"` // standard base64 of the raw 32-byte Ed25519 public keys
	Sigs      []Signature `json:"sigs"` // by a threshold of the version before
}

// SignedBytes are what the previous set's keys sign.
func (s SignedKeySet) SignedBytes() []byte {
	lines := []string{"ota-keys-v1", "version=" + strconv.FormatInt(s.Version, 10), "threshold=" + strconv.Itoa(s.Threshold)}
	keys := append([]string(nil), s.Keys...)
	sort.Strings(keys)
	for _, k := range keys {
		lines = append(lines, "key="+k)
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// Set decodes the keys of s.
func (s SignedKeySet) Set() (KeySet, error) {
	if s.Version < 1 || s.Threshold < 1 || len(s.Keys) == 0 || len(s.Keys) > 64 {
		return KeySet{}, fmt.Errorf("key set v%d: want version ≥ 1, threshold ≥ 1 and 1..64 keys", s.Version)
	}
	var pubs []ed25519.PublicKey
	for _, k := range s.Keys {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return KeySet{}, fmt.Errorf("key set v%d: %q is not a base64 Ed25519 public key", s.Version, k)
		}
		pubs = append(pubs, raw)
	}
	set := NewKeySet(s.Version, s.Threshold, pubs...)
	if len(set.Keys) < s.Threshold {
		return KeySet{}, fmt.Errorf("key set v%d: threshold %d above its %d distinct keys", s.Version, s.Threshold, len(set.Keys))
	}
	return set, nil
}

// KeysFile is ota-keys.release: every version of the key set, oldest first.
type KeysFile struct {
	Versions []SignedKeySet `json:"versions"`
}

// MaxKeysFile bounds ota-keys.release.
const MaxKeysFile = 256 << 10

// ParseKeysFile decodes an untrusted ota-keys.release.
func ParseKeysFile(r io.Reader) (*KeysFile, error) {
	var f KeysFile
	if err := decodeSmall(r, MaxKeysFile, "ota-keys.release", &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Advance follows f from held: each next version must be signed by a threshold of the set
// held before it. From the configured keys (held.Version 0) the first version they can
// verify is the start; after that versions must follow one another. It returns the newest
// set reached (held when none) and the error that stopped the walk, if any.
func (f *KeysFile) Advance(held KeySet) (KeySet, error) {
	vs := append([]SignedKeySet(nil), f.Versions...)
	sort.Slice(vs, func(i, j int) bool { return vs[i].Version < vs[j].Version })
	if len(vs) > 0 && vs[len(vs)-1].Version < held.Version {
		return held, fmt.Errorf("ota-keys.release ends at v%d, older than the key set v%d this device holds: refused", vs[len(vs)-1].Version, held.Version)
	}
	var skipped error
	for _, v := range vs {
		if v.Version <= held.Version {
			continue
		}
		if held.Version > 0 && v.Version != held.Version+1 {
			return held, fmt.Errorf("key set v%d does not follow v%d (missing v%d)", v.Version, held.Version, held.Version+1)
		}
		err := held.Check(fmt.Sprintf("key set v%d", v.Version), v.SignedBytes(), v.Sigs)
		if err != nil && held.Version == 0 && !errors.Is(err, ErrBadSig) {
			skipped = cmp.Or(skipped, err) // signed by keys before this device's configured ones: look further
			continue
		}
		if err != nil {
			return held, err
		}
		next, err := v.Set()
		if err != nil {
			return held, err
		}
		held, skipped = next, nil
	}
	return held, skipped
}

// Timestamp is ota-timestamp.release: a signed issue time and expiry (freeze detection).
type Timestamp struct {
	Issued  int64       `json:"issued"`  // Unix seconds
	Expires int64       `json:"expires"` // Unix seconds
	Sigs    []Signature `json:"sigs"`
}

// SignedBytes are what the release keys sign.
func (t Timestamp) SignedBytes() []byte {
	return []byte("ota-timestamp-v1\nissued=" + strconv.FormatInt(t.Issued, 10) + "\nexpires=" + strconv.FormatInt(t.Expires, 10) + "\n")
}

// ParseTimestamp decodes an untrusted ota-timestamp.release.
func ParseTimestamp(r io.Reader) (*Timestamp, error) {
	var t Timestamp
	if err := decodeSmall(r, MaxReleaseFile, "ota-timestamp.release", &t); err != nil {
		return nil, err
	}
	if t.Issued <= 0 || t.Expires <= t.Issued {
		return nil, fmt.Errorf("ota-timestamp.release: issued %d, expires %d: want 0 < issued < expires", t.Issued, t.Expires)
	}
	return &t, nil
}

// ParseKeys reads each PEM with parse (ParsePrivateKeyPEM, ParsePublicKeyPEM).
func ParseKeys[K any](pems [][]byte, parse func([]byte) (K, error)) ([]K, error) {
	out := make([]K, 0, len(pems))
	for _, p := range pems {
		k, err := parse(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// SignAll signs msg with every key.
func SignAll(msg []byte, keys ...ed25519.PrivateKey) []Signature {
	out := make([]Signature, 0, len(keys))
	for _, k := range keys {
		out = append(out, Signature{KeyID: KeyID(k.Public().(ed25519.PublicKey)), Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg))})
	}
	return out
}

// decodeSmall decodes at most limit bytes of JSON from untrusted r into v.
func decodeSmall(r io.Reader, limit int64, what string, v any) error {
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if int64(len(raw)) > limit {
		return fmt.Errorf("%s larger than %d bytes", what, limit)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
