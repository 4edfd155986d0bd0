// Package publish converges a real deployment (an S3 bucket of binaries and a DynamoDB table
// of rows, protocol.md 1.5) to a signed local catalog: desired (the catalog and the files
// beside its binaries) against current (what the bucket and the table hold), a plan a person
// reads, and an execution ordered so that no device ever sees a row before its bytes
// (protocol.md 3.9). `ota-release publish` is its command; `ota-testserver serve --aws-*`
// reads a deployment back through the same code.
package publish

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

// Item is one row of the table: the reference's attributes (protocol.md 1.5) and this
// project's (sha256, size, serial, and the signed statement as the `.release` object holds
// it), which the unmodified origin never reads.
type Item struct {
	App        string
	Env        string
	Version    string
	Ident      string // a free label; kept as the table has it
	CPUArch    string // os_<arch> rows
	DeviceAttr map[string]bool
	URL        string // s3://<bucket>/<app>_<version>
	MD5        string
	SHA256     string
	Size       int64
	Serial     int64
	Release    string // the signed statement (JSON), "" when unsigned
}

// Key is the item's primary key: app and env (channel).
func (it Item) Key() string { return it.App + "/" + it.Env }

// Object is the S3 key of the item's binary.
func (it Item) Object() string { return it.App + "_" + it.Version }

// Signed says whether the row carries a signed statement.
func (it Item) Signed() bool { return it.Release != "" }

// field is one attribute as the plan shows and compares it.
type field struct{ name, value string }

// fields are the item's attributes in a fixed order, rendered as text ("" when absent).
func (it Item) fields() []field {
	var attrs []string
	for n, on := range it.DeviceAttr {
		if on {
			attrs = append(attrs, n)
		}
	}
	slices.Sort(attrs)
	num := func(n int64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatInt(n, 10)
	}
	return []field{
		{"version", it.Version}, {"url", it.URL}, {"md5", it.MD5}, {"ident", it.Ident},
		{"cpuArch", it.CPUArch}, {"deviceAttr", strings.Join(attrs, ",")},
		{"sha256", it.SHA256}, {"size", num(it.Size)}, {"serial", num(it.Serial)}, {"release", it.Release},
	}
}

// Change is one attribute that differs between the table and the catalog.
type Change struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// diff lists the attributes of want that differ from have.
func diff(have, want Item) []Change {
	var out []Change
	h := have.fields()
	for i, f := range want.fields() {
		if f.value != h[i].value {
			out = append(out, Change{Field: f.name, From: h[i].value, To: f.value})
		}
	}
	return out
}

// ItemOf is the row the table holds for catalog row r, its binary in bucket.
func ItemOf(r catalog.Row, bucket string, release []byte) Item {
	it := Item{App: r.App, Env: r.Env, Version: r.Version, Ident: r.Ident, URL: "s3://" + bucket + "/" + r.Key(),
		MD5: r.MD5, SHA256: r.SHA256, Size: r.Size, Serial: r.Serial, Release: strings.TrimSpace(string(release))}
	if arch, ok := strings.CutPrefix(r.App, "os_"); ok {
		it.CPUArch = arch
	}
	if len(r.DeviceAttr) > 0 {
		it.DeviceAttr = maps.Clone(r.DeviceAttr)
	}
	if it.Release == "" {
		it.Serial = 0 // a serial means something only inside a signed statement
	}
	return it
}

// Row is the catalog row an item describes (the test server serves a deployment this way):
// its binary is file; the signed statement's fields come from the item's release.
func (it Item) Row(file string) (catalog.Row, error) {
	r := catalog.Row{App: it.App, Env: it.Env, Version: it.Version, File: file, Ident: it.Ident, DeviceAttr: it.DeviceAttr}
	if it.Release == "" {
		return r, nil
	}
	var rf packaging.ReleaseFile
	if err := json.Unmarshal([]byte(it.Release), &rf); err != nil {
		return r, fmt.Errorf("row %s: its release attribute: %w", it.Key(), err)
	}
	r.Serial, r.Sig, r.KeyID, r.Class, r.Sigs = rf.Serial, rf.Sig, rf.KeyID, rf.Class, rf.Sigs
	return r, nil
}
