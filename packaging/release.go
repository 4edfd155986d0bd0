package packaging

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Statement is what a publisher signs for one binary (protocol.md 3.3).
type Statement struct {
	App     string
	Version string
	SHA256  string
	MD5     string
	Size    int64
	Serial  int64
	Class   // v2: the channel and device class it was published for
}

// SignedBytes are exactly the bytes the Ed25519 signature covers: v1, or v2 with the class.
func (s Statement) SignedBytes() []byte {
	common := "\napp=" + s.App + "\nversion=" + s.Version +
		"\nsha256=" + s.SHA256 + "\nmd5=" + s.MD5 + "\nsize=" + strconv.FormatInt(s.Size, 10) +
		"\nserial=" + strconv.FormatInt(s.Serial, 10) + "\n"
	if s.V < 2 {
		return []byte("ota-release-v1" + common)
	}
	v2 := "ota-release-v2" + common + "channel=" + s.Channel + "\nattrs=" + s.Attrs + "\ncpu_arch=" + s.CPUArch + "\n"
	if s.Ramp != "" { // a statement without a ramp signs the same bytes as before ramps existed
		v2 += "ramp=" + s.Ramp + "\n"
	}
	if s.Halted != 0 {
		v2 += "halted=" + strconv.FormatInt(s.Halted, 10) + "\n"
	}
	return []byte(v2)
}

// What names the statement in errors.
func (s Statement) What() string { return s.App + " " + s.Version }

// Sign returns the standard-base64 signature and the key id of priv's public key.
func (s Statement) Sign(priv ed25519.PrivateKey) (sig, keyid string) {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, s.SignedBytes())),
		KeyID(priv.Public().(ed25519.PublicKey))
}

// Sentinel errors of KeySet.Check.
var (
	ErrUnknownKey = errors.New("signed with a key that is not trusted")
	ErrBadSig     = errors.New("signature does not verify")
)

// KeyID is the first 16 hex digits of SHA-256 of the raw 32-byte public key.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// GenerateKey makes a new Ed25519 key pair as PEM: PKCS#8 private, PKIX public (the forms
// `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write).
func GenerateKey() (privPEM, pubPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pk, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), nil
}

// ParsePublicKeyPEM reads a PKIX "PUBLIC KEY" PEM block holding an Ed25519 key.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	return DecodeKey[ed25519.PublicKey](data, "PUBLIC KEY", "Ed25519",
		"want the output of `openssl pkey -pubout` or `ota-release keygen`", x509.ParsePKIXPublicKey)
}

// ParsePrivateKeyPEM reads a PKCS#8 "PRIVATE KEY" PEM block holding an Ed25519 key.
func ParsePrivateKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	return DecodeKey[ed25519.PrivateKey](data, "PRIVATE KEY", "Ed25519",
		"want `openssl genpkey -algorithm ed25519` or `ota-release keygen` output", x509.ParsePKCS8PrivateKey)
}

// DecodeKey reads the first PEM block of data (of type block, when not ""), parses it with
// the first parser that accepts it, and wants a key of type K (named kind in errors); hint
// says where a right one comes from.
func DecodeKey[K any](data []byte, block, kind, hint string, parsers ...func([]byte) (any, error)) (K, error) {
	var zero K
	b, _ := pem.Decode(data)
	if b == nil || block != "" && b.Type != block {
		if block == "" {
			block = "key"
		}
		return zero, fmt.Errorf("no PEM %q block (%s)", block, hint)
	}
	var err error
	for _, parse := range parsers {
		var k any
		if k, err = parse(b.Bytes); err == nil {
			key, ok := k.(K)
			if !ok {
				return zero, fmt.Errorf("the key is %T, not %s", k, kind)
			}
			return key, nil
		}
	}
	return zero, fmt.Errorf("parse %s key: %w", kind, err)
}

// ReleaseFile is `<app>_<version>.release`, the statement published beside the binary for
// reference servers that cannot pass the extension fields through.
type ReleaseFile struct {
	App     string `json:"app"`
	Version string `json:"version"`
	MD5     string `json:"md5"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Serial  int64  `json:"serial"`
	Sig     string `json:"sig"`
	KeyID   string `json:"keyid"`
	Class
	Sigs []Signature `json:"sigs,omitempty"` // more signatures (trust thresholds)
}

// MaxReleaseFile bounds a .release document.
const MaxReleaseFile = 64 << 10

// ParseReleaseFile decodes an untrusted .release document.
func ParseReleaseFile(r io.Reader) (*ReleaseFile, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxReleaseFile+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxReleaseFile {
		return nil, fmt.Errorf("release statement larger than %d bytes", MaxReleaseFile)
	}
	var f ReleaseFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("release statement: %w", err)
	}
	if err := f.Entry("").validate(f.App); err != nil {
		return nil, fmt.Errorf("release statement: %w", err)
	}
	if f.MD5 == "" || f.SHA256 == "" || f.Sig == "" {
		return nil, errors.New("release statement lacks md5, sha256 or sig")
	}
	return &f, nil
}

// Statement returns the signed fields of f.
func (f *ReleaseFile) Statement() Statement {
	return Statement{App: f.App, Version: f.Version, SHA256: f.SHA256, MD5: f.MD5, Size: f.Size, Serial: f.Serial, Class: f.Class}
}

// Entry is f as a package_details entry (url as given).
func (f *ReleaseFile) Entry(url string) Entry {
	return Entry{LatestVersion: f.Version, URL: url, StatusCode: 200, MD5: f.MD5, SHA256: f.SHA256, Size: f.Size, Serial: f.Serial, Sig: f.Sig, KeyID: f.KeyID, Class: f.Class, Sigs: f.Sigs}
}

// Signatures are all of f's signatures.
func (f *ReleaseFile) Signatures() []Signature {
	return append([]Signature{{KeyID: f.KeyID, Sig: f.Sig}}, f.Sigs...)
}
