package reference

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/ota-agent/ota-agent/internal/catalog"
)

// errAppCrash stands for an exception inside the reference application (HTML 500).
var errAppCrash = errors.New("application error")

// param is one key of the parsed query with its first value.
type param struct{ key, value string }

// parseQuery does what the reference does with a query string: Python's parse_qs (split on
// "&" only, "+" is a space, %XX decoded with errors='replace', blank values and keys without
// "=" dropped, first value of each exact key), then `{k.lower(): v[0].lower()}`, where a
// later key that lower-cases to the same string overwrites an earlier one in place.
// asciiOnly is AppRunner's Flask path, which fails on any non-ASCII byte.
func parseQuery(raw string, asciiOnly bool) ([]param, error) {
	if asciiOnly {
		for i := 0; i < len(raw); i++ {
			if raw[i] >= 0x80 {
				return nil, errAppCrash
			}
		}
	}
	var order []string
	first := map[string]string{}
	for _, nv := range strings.Split(raw, "&") {
		if nv == "" {
			continue
		}
		k, v, ok := strings.Cut(nv, "=")
		if !ok || v == "" {
			continue
		}
		k, v = pyUnquote(strings.ReplaceAll(k, "+", " ")), pyUnquote(strings.ReplaceAll(v, "+", " "))
		if asciiOnly && (!isASCII(k) || !isASCII(v)) {
			return nil, errAppCrash
		}
		if _, seen := first[k]; !seen {
			order = append(order, k)
			first[k] = v
		}
	}
	var out []param
	index := map[string]int{}
	for _, k := range order {
		lk, lv := strings.ToLower(k), strings.ToLower(first[k])
		if i, ok := index[lk]; ok {
			out[i].value = lv
			continue
		}
		index[lk] = len(out)
		out = append(out, param{lk, lv})
	}
	return out, nil
}

// pyUnquote is urllib.parse.unquote(s, errors='replace'): valid %XX escapes become bytes,
// invalid ones stay as they are, and the bytes are decoded as UTF-8 with U+FFFD for errors.
func pyUnquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// selection is what the reference's PartiQL statement asks DynamoDB for.
type selection struct {
	cpuArch, os, payloadType string
	attrs, pins              []param
}

// statusError is an answer the reference application gives with a JSON error body.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

const (
	msgLambdaFull   = "'Full Payload' not available in this environment, please include the query param: payloadType=metadataOnly"
	msgMissingArch  = "Missing cpuArch query param"
	msgBadPayload   = "Invalid payloadType param"
	msgNotFound     = "No deployment package found"
	payloadFull     = "fullpayload"
	payloadMetadata = "metadataonly"
)

// parseSelection applies find_matching_apps' checks in its order. A value the reference
// would paste into PartiQL and make invalid (a quote, an attribute name that is not an
// identifier) is errAppCrash.
func parseSelection(params []param, lambda bool) (*selection, error) {
	s := &selection{os: "prod", payloadType: payloadFull}
	for _, p := range params {
		switch {
		case p.key == "cpuarch":
			s.cpuArch = p.value
		case p.key == "os":
			s.os = p.value
		case p.key == "payloadtype":
			s.payloadType = p.value
		case strings.HasPrefix(p.key, "attr"):
			s.attrs = append(s.attrs, param{p.key[4:], p.value})
		default:
			s.pins = append(s.pins, p)
		}
	}
	if lambda && s.payloadType == payloadFull {
		return nil, &statusError{405, msgLambdaFull}
	}
	if s.cpuArch == "" {
		return nil, &statusError{400, msgMissingArch}
	}
	if s.payloadType != payloadFull && s.payloadType != payloadMetadata {
		return nil, &statusError{400, msgBadPayload}
	}
	for _, v := range []string{s.cpuArch, s.os} {
		if strings.Contains(v, "'") {
			return nil, errAppCrash
		}
	}
	for _, a := range s.attrs {
		if !isIdentifier(a.key) || strings.Contains(a.value, "'") {
			return nil, errAppCrash
		}
	}
	for _, p := range s.pins {
		if strings.Contains(p.key, "'") || strings.Contains(p.value, "'") {
			return nil, errAppCrash
		}
	}
	return s, nil
}

// isIdentifier: what PartiQL accepts after "deviceAttr.".
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// matches is the WHERE clause.
func (s *selection) matches(r *catalog.Row) bool {
	if r.App == "os_"+s.cpuArch && r.Env == s.os {
		return true
	}
	for _, a := range s.attrs {
		if r.DeviceAttr[a.key] && r.Env == a.value {
			return true
		}
	}
	for _, p := range s.pins {
		if r.App == p.key && r.Env == p.value {
			return true
		}
	}
	return false
}
