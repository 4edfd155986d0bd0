package agent

import (
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Edge request limits (protocol.md 2): the agent never sends a request over them.
const (
	maxURLBytes     = 8192
	maxRequestBytes = 20480
)

// kernelArch maps `uname -m` to the catalog's cpuArch names.
var kernelArch = map[string]string{
	"aarch64": "armv8", "arm64": "armv8", "armv8l": "armv8",
	"armv7l": "armv7", "armv7": "armv7",
	"armv6l": "armv6", "x86_64": "x86_64", "i686": "x86",
}

// CPUArch resolves device.cpu_arch ("auto" reads the kernel).
func (c *Config) CPUArch() (string, error) {
	if c.Device.CPUArch != "auto" {
		return c.Device.CPUArch, nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("device.cpu_arch auto: uname: %w", err)
	}
	m := unix.ByteSliceToString(u.Machine[:])
	if a, ok := kernelArch[m]; ok {
		return a, nil
	}
	return strings.ToLower(m), nil
}

// Facts are what the device reports: the canonical query of protocol.md 3.1 minus payloadtype.
type Facts map[string]string

// DeviceFacts gathers cpuarch, os, every configured attribute whose probe (if any) matches
// under the sysroot, and every pin. Keys and values are lower-case.
func (c *Config) DeviceFacts() (Facts, error) {
	arch, err := c.CPUArch()
	if err != nil {
		return nil, err
	}
	f := Facts{"cpuarch": strings.ToLower(arch), "os": strings.ToLower(c.Device.OS)}
	names := map[string]bool{}
	for n := range c.Device.Attributes {
		names[n] = true
	}
	for n := range c.Device.Probes {
		names[n] = true
	}
	for n := range names {
		if glob, ok := c.Device.Probes[n]; ok {
			m, err := filepath.Glob(c.Path(glob))
			if err != nil {
				return nil, fmt.Errorf("%w: device.probes.%s: %v", ErrConfig, n, err)
			}
			if len(m) == 0 {
				continue
			}
		}
		ch := c.Device.Attributes[n]
		if ch == "" {
			ch = c.Device.OS
		}
		f["attr"+strings.ToLower(n)] = strings.ToLower(ch)
	}
	for app, ch := range c.Device.Pins {
		f[strings.ToLower(app)] = strings.ToLower(ch)
	}
	return f, nil
}

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

// checkRequestSize refuses a request the edge would refuse.
func checkRequestSize(u *url.URL, inm string) error {
	uri := u.RequestURI()
	if len(uri) > maxURLBytes {
		return fmt.Errorf("the request URL would be %d bytes, over the edge's %d: fewer attributes or pins", len(uri), maxURLBytes)
	}
	if n := len(uri) + len(inm) + len(u.Host) + 200; n > maxRequestBytes {
		return fmt.Errorf("the request would be about %d bytes (If-None-Match %d bytes), over the edge's %d: too many installed apps for one request", n, len(inm), maxRequestBytes)
	}
	return nil
}
