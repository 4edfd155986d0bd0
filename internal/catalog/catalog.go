// Package catalog is a deployment's table and bucket on disk: DIR/catalog.json (the DynamoDB
// rows of the reference deployment plus this project's fields) and the binaries it names.
// It loads and hashes them, and signs them as a publisher does; the test server serves a
// catalog and ota-release signs one.
package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/packaging"
)

// Row is one DynamoDB item of the reference deployment, plus this project's extension fields.
// MD5, SHA256 and Size are computed from File at load.
type Row struct {
	App        string          `json:"app"`
	Env        string          `json:"env"`
	Version    string          `json:"version"`
	File       string          `json:"file"`
	DeviceAttr map[string]bool `json:"deviceAttr,omitempty"`
	Ident      string          `json:"ident,omitempty"` // the table's free label (ota-release publish)
	Serial     int64           `json:"serial,omitempty"`
	Sig        string          `json:"sig,omitempty"`
	KeyID      string          `json:"keyid,omitempty"`
	// The signed statement's class (v2: the channel and device class it was signed for) and
	// its signatures beyond the first.
	Class packaging.Class       `json:"class,omitzero"`
	Sigs  []packaging.Signature `json:"sigs,omitempty"`

	MD5    string `json:"-"`
	SHA256 string `json:"-"`
	Size   int64  `json:"-"`
	path   string
}

// Key is the S3 object key of the row's binary, and its tar member name.
func (r Row) Key() string { return r.App + "_" + r.Version }

// Catalog is the table and the bucket.
type Catalog struct {
	Bucket string `json:"bucket"`
	Rows   []Row  `json:"rows"`
	// Ramp is the phased rollout (package ramp's signed form) SignRowsVersion gives the rows
	// it numbers as new or replaced ("" = at once).
	Ramp string `json:"-"`
	dir  string
}

// Load reads DIR/catalog.json and hashes every binary it names.
func Load(dir string) (*Catalog, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "catalog.json"))
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	var c Catalog
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", filepath.Join(dir, "catalog.json"), err)
	}
	if c.Bucket == "" {
		return nil, fmt.Errorf("load catalog %s: no bucket", dir)
	}
	c.dir = dir
	for i := range c.Rows {
		if err := c.Rows[i].Load(dir); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// Load checks r and hashes its binary (r.File, relative to the catalog directory dir).
func (r *Row) Load(dir string) error {
	if r.App == "" || r.Env == "" || r.Version == "" || r.File == "" {
		return fmt.Errorf("catalog row %+v: app, env, version and file are required", *r)
	}
	if err := packaging.ValidFileName(r.Key()); err != nil {
		return fmt.Errorf("catalog row %s: %w", r.Key(), err)
	}
	r.path = r.File
	if !filepath.IsAbs(r.path) {
		r.path = filepath.Join(dir, r.File)
	}
	d, err := packaging.DigestFile(r.path)
	if err != nil {
		return fmt.Errorf("catalog row %s: %w", r.Key(), err)
	}
	r.MD5, r.SHA256, r.Size = d.MD5, d.SHA256, d.Size
	return nil
}

// Save writes the catalog back to DIR/catalog.json atomically.
func (c *Catalog) Save() error {
	raw, err := json.MarshalIndent(c, "", " ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.dir, "catalog.json"), append(raw, '\n'), 0o644)
}

// Dir is where the catalog lives.
func (c *Catalog) Dir() string { return c.dir }

// WithRows is the same catalog (bucket, directory) with other rows.
func (c *Catalog) WithRows(rows []Row) *Catalog {
	return &Catalog{Bucket: c.Bucket, Rows: rows, dir: c.dir}
}

// Path is the file of the row's binary (after Load).
func (r Row) Path() string { return r.path }

// Release is the statement published beside the row's binary.
func (r Row) Release() packaging.ReleaseFile {
	return packaging.ReleaseFile{App: r.App, Version: r.Version, MD5: r.MD5, SHA256: r.SHA256, Size: r.Size, Serial: r.Serial, Sig: r.Sig, KeyID: r.KeyID, Class: r.Class, Sigs: r.Sigs}
}

// Statement returns what a publisher signs for row i.
func (c *Catalog) Statement(i int) packaging.Statement {
	r := c.Rows[i]
	return packaging.Statement{App: r.App, Version: r.Version, SHA256: r.SHA256, MD5: r.MD5, Size: r.Size, Serial: r.Serial, Class: r.Class}
}

// SampleRows are the nine rows of protocol.md 1.1, in the reference init.py's order.
var SampleRows = []Row{
	{App: "os_armv8", Env: "beta", Version: "2.0.0"},
	{App: "os_armv8", Env: "prod", Version: "1.1.0"},
	{App: "os_armv7", Env: "beta", Version: "2.0.0"},
	{App: "os_armv7", Env: "prod", Version: "1.0.0"},
	{App: "scoreboard", Env: "beta", Version: "2.0.0", DeviceAttr: map[string]bool{"gamer": true}},
	{App: "scoreboard", Env: "prod", Version: "1.0.0", DeviceAttr: map[string]bool{"gamer": true}},
	{App: "videoStreamer", Env: "beta", Version: "0.1.2", DeviceAttr: map[string]bool{"camera": true}},
	{App: "videoStreamer", Env: "prod", Version: "0.0.1", DeviceAttr: map[string]bool{"camera": true, "gamer": true}},
	{App: "modemFW", Env: "prod", Version: "1.0", DeviceAttr: map[string]bool{"cellular": true}},
}

// WriteSample writes the sample catalog into dir: size random bytes per binary, the same
// bytes for the same seed; a beta binary is its app's prod binary with its middle eighth
// changed, published with a patch from prod and a chunk index (protocol.md 3.5), as a publisher
// running `ota-release delta` and `index` would. With a private key the rows are signed.
func WriteSample(dir string, size int64, seed uint64, privPEM []byte) (*Catalog, error) {
	if size < 0 {
		return nil, errors.New("sample: negative size")
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		return nil, err
	}
	c := &Catalog{Bucket: "cf-iot-ota-appbinaries-local", dir: dir}
	for i, r := range SampleRows {
		r.File = "blobs/" + r.Key()
		if err := writeRandom(filepath.Join(dir, r.File), size, seed*1000+uint64(i)); err != nil {
			return nil, err
		}
		c.Rows = append(c.Rows, r)
	}
	if err := c.sampleDeltas(seed); err != nil {
		return nil, err
	}
	if err := c.Save(); err != nil {
		return nil, err
	}
	c, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if privPEM != nil {
		return c, c.SignRows(privPEM)
	}
	return c, nil
}

// sampleDeltas makes each beta binary from its prod one and publishes the deltas (binaries
// of 64 KiB and more: the tests' tiny samples skip the encoder's cost).
func (c *Catalog) sampleDeltas(seed uint64) error {
	for _, beta := range c.Rows {
		if fi, err := os.Stat(filepath.Join(c.dir, beta.File)); err != nil || fi.Size() < 64<<10 {
			continue
		}
		for _, prod := range c.Rows {
			if beta.Env != "beta" || prod.Env != "prod" || prod.App != beta.App {
				continue
			}
			old, err := os.ReadFile(filepath.Join(c.dir, prod.File))
			if err != nil {
				return err
			}
			nw := append([]byte(nil), old...)
			mid := filepath.Join(c.dir, beta.File+".mid")
			if err := writeRandom(mid, int64(len(nw)/8), seed*1000+999); err != nil {
				return err
			}
			change, _ := os.ReadFile(mid)
			os.Remove(mid)
			copy(nw[len(nw)/2:], change)
			if err := atomicfile.Write(filepath.Join(c.dir, beta.File), nw, 0o644); err != nil {
				return err
			}
			patch, err := packaging.MakePatch(old, nw)
			if err != nil {
				return err
			}
			if err := atomicfile.Write(filepath.Join(c.dir, beta.File+packaging.PatchSuffix(packaging.SHA256Hex(old))), patch, 0o644); err != nil {
				return err
			}
			idx, err := packaging.ChunkFile(bytes.NewReader(nw))
			if err != nil {
				return err
			}
			raw, _ := json.Marshal(idx)
			if err := atomicfile.Write(filepath.Join(c.dir, beta.File+packaging.ChunkSuffix), raw, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeRandom(path string, size int64, seed uint64) error {
	return atomicfile.WriteFunc(path, 0o644, func(w io.Writer) error {
		rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32)})
		_, err := io.CopyN(w, rng, size)
		return err
	})
}

// Select is what the reference application selects for a device: the OS row of its cpuArch
// on its os channel, every row whose deviceAttr the device has on that attribute's channel,
// and pinned apps on their channel. facts are the request's keys, lower-case: cpuarch, os,
// attr<name>, or an app name for a pin.
func (c *Catalog) Select(facts map[string]string) []Row {
	osCh := facts["os"]
	if osCh == "" {
		osCh = "prod"
	}
	var out []Row
	for _, r := range c.Rows {
		sel := r.App == "os_"+facts["cpuarch"] && r.Env == osCh || facts[r.App] == r.Env
		for attr := range r.DeviceAttr {
			if ch, ok := facts["attr"+attr]; ok && ch == r.Env {
				sel = true
			}
		}
		if sel {
			out = append(out, r)
		}
	}
	return out
}

// PinsWin drops from rows (a Select) every row of a pinned app that an attribute selected
// beside the pinned one: the pin is the more specific choice. It returns the rows kept and
// those dropped. The reference service sends both (Select stays as it does).
func PinsWin(rows []Row, pins map[string]string) (kept, shadowed []Row) {
	pinned := map[string]bool{}
	for _, r := range rows {
		if ch, ok := pins[r.App]; ok && r.Env == ch {
			pinned[r.App] = true
		}
	}
	for _, r := range rows {
		if pinned[r.App] && r.Env != pins[r.App] {
			shadowed = append(shadowed, r)
			continue
		}
		kept = append(kept, r)
	}
	return kept, shadowed
}

// Bundle writes the rows as a full payload, exactly as the server sends one with statements
// inline: each binary, then package_details.json (`ota-agent install` takes it offline).
func (c *Catalog) Bundle(w io.Writer, rows []Row, mtime time.Time) error {
	var d packaging.Details
	for _, r := range rows {
		d.Set(r.App, packaging.Entry{LatestVersion: r.Version, URL: "s3://" + c.Bucket + "/" + r.Key(), StatusCode: 200,
			MD5: r.MD5, SHA256: r.SHA256, Size: r.Size, Serial: r.Serial, Sig: r.Sig, KeyID: r.KeyID, Class: r.Class, Sigs: r.Sigs})
	}
	return WritePayload(w, rows, d.Marshal(), mtime)
}

// WritePayload streams the rows' binaries as a tar.gz, then details as package_details.json:
// never more than one copy buffer of a binary in memory.
func WritePayload(w io.Writer, rows []Row, details []byte, mtime time.Time) error {
	pw := packaging.NewPayloadWriter(w, mtime)
	for _, r := range rows {
		f, err := os.Open(r.path)
		if err != nil {
			return err
		}
		err = pw.Add(r.Key(), r.Size, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return pw.Close(details)
}
