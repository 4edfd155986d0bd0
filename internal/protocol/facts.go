package protocol

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Edge request limits (protocol.md 2): the agent never sends a request over them.
const (
	maxURLBytes     = 8192
	maxRequestBytes = 20480
)

// Facts are what the device reports: the canonical query of protocol.md 3.1 minus payloadtype.
type Facts map[string]string

// Query is the canonical query string: keys sorted, each once, lower-case.
func (f Facts) Query(payloadType string) string {
	keys := make([]string, 0, len(f)+1)
	for k := range f {
		keys = append(keys, k)
	}
	keys = append(keys, "payloadtype")
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		v := f[k]
		if k == "payloadtype" {
			v = payloadType
		}
		b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(v))
	}
	return b.String()
}

// CheckRequestSize refuses a request the edge would refuse.
func CheckRequestSize(u *url.URL, inm string) error {
	uri := u.RequestURI()
	if len(uri) > maxURLBytes {
		return fmt.Errorf("the request URL would be %d bytes, over the edge's %d: fewer attributes or pins", len(uri), maxURLBytes)
	}
	if n := len(uri) + len(inm) + len(u.Host) + 200; n > maxRequestBytes {
		return fmt.Errorf("the request would be about %d bytes (If-None-Match %d bytes), over the edge's %d: too many installed apps for one request", n, len(inm), maxRequestBytes)
	}
	return nil
}
