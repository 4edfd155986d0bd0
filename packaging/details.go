package packaging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DetailsName is the tar member that describes the payload; the reference writes it last.
const DetailsName = "package_details.json"

// Limits on what a decoder accepts from the network.
const (
	MaxDetailsBytes = 1 << 20 // package_details.json / metadataOnly body
	MaxEntries      = 1000
	MaxNameLen      = 200 // <app>_<version>
)

// Entry is one app of package_details.json: the reference fields plus this project's
// extensions (protocol.md 3.3), which a reference server never sends.
type Entry struct {
	LatestVersion string      `json:"latestVersion"`
	URL           string      `json:"url"`
	StatusCode    int         `json:"status_code"`
	MD5           string      `json:"md5,omitempty"`
	SHA256        string      `json:"sha256,omitempty"`
	Size          int64       `json:"size,omitempty"`
	Serial        int64       `json:"serial,omitempty"`
	Sig           string      `json:"sig,omitempty"`
	KeyID         string      `json:"keyid,omitempty"`
	Download      string      `json:"download,omitempty"`
	Class                     // v2 statements: channel and device class
	Sigs          []Signature `json:"sigs,omitempty"` // more signatures (trust thresholds)
}

// Statement is what the entry claims was signed for app.
func (e Entry) Statement(app string) Statement {
	return Statement{App: app, Version: e.LatestVersion, SHA256: e.SHA256, MD5: e.MD5, Size: e.Size, Serial: e.Serial, Class: e.Class}
}

// Signatures are all of the entry's signatures.
func (e Entry) Signatures() []Signature {
	if e.Sig == "" {
		return e.Sigs
	}
	return append([]Signature{{KeyID: e.KeyID, Sig: e.Sig}}, e.Sigs...)
}

// Details is package_details.json: apps in the order the server wrote them.
type Details struct {
	Apps    []string
	Entries map[string]Entry
}

// Set adds or replaces app's entry; a replaced app keeps its first position, as a Python dict.
func (d *Details) Set(app string, e Entry) {
	if d.Entries == nil {
		d.Entries = map[string]Entry{}
	}
	if _, ok := d.Entries[app]; !ok {
		d.Apps = append(d.Apps, app)
	}
	d.Entries[app] = e
}

// Marshal writes the JSON exactly as the reference's json.dumps does (", " and ": "
// separators, non-ASCII escaped), extension fields after status_code.
func (d *Details) Marshal() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, app := range d.Apps {
		e := d.Entries[app]
		if i > 0 {
			b.WriteString(", ")
		}
		pyString(&b, app)
		b.WriteString(": {\"latestVersion\": ")
		pyString(&b, e.LatestVersion)
		b.WriteString(", \"url\": ")
		pyString(&b, e.URL)
		b.WriteString(", \"status_code\": ")
		b.WriteString(strconv.Itoa(e.StatusCode))
		str := func(k, v string) {
			if v != "" {
				fmt.Fprintf(&b, ", %q: ", k)
				pyString(&b, v)
			}
		}
		num := func(k string, v int64) {
			if v != 0 {
				fmt.Fprintf(&b, ", %q: %d", k, v)
			}
		}
		str("md5", e.MD5)
		str("sha256", e.SHA256)
		num("size", e.Size)
		num("serial", e.Serial)
		str("sig", e.Sig)
		str("keyid", e.KeyID)
		str("download", e.Download)
		num("v", int64(e.V))
		str("channel", e.Channel)
		str("attrs", e.Attrs)
		str("cpu_arch", e.CPUArch)
		str("ramp", e.Ramp)
		num("halted", e.Halted)
		if len(e.Sigs) > 0 {
			b.WriteString(`, "sigs": [`)
			for i, s := range e.Sigs {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(`{"keyid": `)
				pyString(&b, s.KeyID)
				b.WriteString(`, "sig": `)
				pyString(&b, s.Sig)
				b.WriteByte('}')
			}
			b.WriteByte(']')
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.Bytes()
}

// QuotePy returns s as a JSON string the way Python's json.dumps writes it.
func QuotePy(s string) string {
	var b bytes.Buffer
	pyString(&b, s)
	return b.String()
}

// pyString writes s as Python's json.dumps(ensure_ascii=True) would.
func pyString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r > 0x7f && r < 0x10000):
			fmt.Fprintf(b, `\u%04x`, r)
		case r >= 0x10000:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// ErrBadDetails wraps every reason a package_details document is refused.
var ErrBadDetails = errors.New("bad package details")

// DecodeDetails reads and validates package_details JSON from untrusted r: at most
// MaxDetailsBytes, at most MaxEntries apps, every app a valid file-name part, every
// status 200 or 304, every extension field well-formed when present.
func DecodeDetails(r io.Reader) (*Details, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxDetailsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrBadDetails, err)
	}
	if len(raw) > MaxDetailsBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadDetails, MaxDetailsBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadDetails)
	}
	d := &Details{Entries: map[string]Entry{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadDetails, err)
		}
		app := tok.(string)
		var e Entry
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("%w: app %q: %v", ErrBadDetails, app, err)
		}
		if err := e.validate(app); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadDetails, err)
		}
		d.Set(app, e)
		if len(d.Apps) > MaxEntries {
			return nil, fmt.Errorf("%w: more than %d apps", ErrBadDetails, MaxEntries)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDetails, err)
	}
	if dec.More() || trailing(dec) {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrBadDetails)
	}
	return d, nil
}

func trailing(dec *json.Decoder) bool {
	rest, _ := io.ReadAll(dec.Buffered())
	return len(bytes.TrimSpace(rest)) > 0
}

func (e Entry) validate(app string) error {
	if err := ValidFileName(app + "_" + e.LatestVersion); err != nil {
		return fmt.Errorf("app %q version %q: %v", app, e.LatestVersion, err)
	}
	if e.LatestVersion == "" {
		return fmt.Errorf("app %q: empty latestVersion", app)
	}
	if e.StatusCode != 200 && e.StatusCode != 304 {
		return fmt.Errorf("app %q: status_code %d is neither 200 nor 304", app, e.StatusCode)
	}
	if e.MD5 != "" && !isHex(e.MD5, 32) {
		return fmt.Errorf("app %q: md5 %q is not 32 lower-case hex digits", app, e.MD5)
	}
	if e.SHA256 != "" && !isHex(e.SHA256, 64) {
		return fmt.Errorf("app %q: sha256 %q is not 64 lower-case hex digits", app, e.SHA256)
	}
	if e.Size < 0 || e.Serial < 0 {
		return fmt.Errorf("app %q: negative size or serial", app)
	}
	if e.KeyID != "" && !isHex(e.KeyID, 16) {
		return fmt.Errorf("app %q: keyid %q is not 16 hex digits", app, e.KeyID)
	}
	if e.V < 0 || e.V > 2 || len(e.Sigs) > 16 {
		return fmt.Errorf("app %q: statement version %d or %d extra signatures (want v1 or v2, at most 16)", app, e.V, len(e.Sigs))
	}
	if err := e.Class.validRollout(); err != nil {
		return fmt.Errorf("app %q: %v", app, err)
	}
	for _, s := range e.Sigs {
		if !isHex(s.KeyID, 16) || len(s.Sig) > 100 {
			return fmt.Errorf("app %q: a signature's keyid %q is not 16 hex digits, or its sig is too long", app, s.KeyID)
		}
	}
	return nil
}

// ValidFileName reports why name cannot be a member/file name of a payload: the protocol
// only ever uses flat `<app>_<version>` names, so anything else is refused, never cleaned.
func ValidFileName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("empty or dot name %q", name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name longer than %d bytes", MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not UTF-8", name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("name %q contains a path separator or NUL", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("name %q contains a control character", name)
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// SortedMD5s returns the If-None-Match value of protocol.md 3.1: sorted, joined by ",".
func SortedMD5s(md5s []string) string {
	s := append([]string(nil), md5s...)
	sort.Strings(s)
	out := s[:0]
	for i, m := range s {
		if i == 0 || m != s[i-1] {
			out = append(out, m)
		}
	}
	return strings.Join(out, ",")
}

// ValidToken tells whether s may be an attribute name, a pinned app's name or a channel in a
// device's request: letters, digits, _ . - (a reference origin answers HTML 500 to a quote
// or an odd attr key).
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
