package publish

import (
	"bytes"
	"cmp"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

// Kinds of objects, in the order they are uploaded: a binary before the files that describe
// or patch it, every file before the trust documents, everything before the rows.
const (
	KindBinary = iota
	KindSide   // <key>.release, .from-<h16>.zst, .from-<h16>.blocks, .chunks
	KindTrust  // ota-keys.release, ota-timestamp.release
)

// TrustDocs are the bucket's trust documents (protocol.md 3.5), from the catalog directory.
var TrustDocs = []string{"ota-keys.release", "ota-timestamp.release"}

// File is one object a device may fetch, as the catalog directory holds it.
type File struct {
	Key  string
	Path string
	Size int64
	MD5  string
	Kind int
}

// Desired is what the deployment must hold: the catalog's rows and every file a device may
// fetch.
type Desired struct {
	Files []File
	Items []Item
}

// Desire reads the catalog into what bucket and its table must hold. It refuses a catalog
// that cannot be published whole: two rows for one app and channel, one key with two
// contents, a signed row whose statement is missing or is not of its bytes.
func Desire(c *catalog.Catalog, bucket string) (*Desired, error) {
	d := &Desired{}
	rows := map[string]catalog.Row{}
	files := map[string]File{}
	add := func(f File) error {
		if err := packaging.ValidFileName(f.Key); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if old, ok := files[f.Key]; ok && old.MD5 != f.MD5 {
			return fmt.Errorf("object %s would hold two contents: %s and %s differ", f.Key, old.Path, f.Path)
		}
		files[f.Key] = f
		return nil
	}
	for _, r := range c.Rows {
		k := r.App + "/" + r.Env
		if other, ok := rows[k]; ok {
			return nil, fmt.Errorf("catalog %s: two rows for app %s on channel %s (versions %s and %s): the table holds one per app and channel", c.Dir(), r.App, r.Env, other.Version, r.Version)
		}
		rows[k] = r
		if err := add(File{Key: r.Key(), Path: r.Path(), Size: r.Size, MD5: r.MD5, Kind: KindBinary}); err != nil {
			return nil, err
		}
		release, err := statement(r)
		if err != nil {
			return nil, err
		}
		if release != nil {
			if err := add(fileOf(r.Key()+".release", r.Path()+".release", release, KindSide)); err != nil {
				return nil, err
			}
		}
		side, err := sideFiles(r)
		if err != nil {
			return nil, err
		}
		for _, f := range side {
			if err := add(f); err != nil {
				return nil, err
			}
		}
		d.Items = append(d.Items, ItemOf(r, bucket, release))
	}
	for _, name := range TrustDocs {
		path := filepath.Join(c.Dir(), name)
		raw, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := add(fileOf(name, path, raw, KindTrust)); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		d.Files = append(d.Files, f)
	}
	slices.SortFunc(d.Files, func(a, b File) int { return cmp.Or(a.Kind-b.Kind, strings.Compare(a.Key, b.Key)) })
	slices.SortFunc(d.Items, func(a, b Item) int { return strings.Compare(a.Key(), b.Key()) })
	return d, nil
}

func fileOf(key, path string, raw []byte, kind int) File {
	sum := md5.Sum(raw)
	return File{Key: key, Path: path, Size: int64(len(raw)), MD5: hex.EncodeToString(sum[:]), Kind: kind}
}

// statement is the signed row's `.release` (nil for an unsigned row), checked to be the
// statement of the row's bytes as the catalog holds them.
func statement(r catalog.Row) ([]byte, error) {
	if r.Sig == "" {
		return nil, nil
	}
	path := r.Path() + ".release"
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("row %s/%s is signed but its statement %s cannot be read (%v): run ota-release sign again", r.App, r.Env, path, err)
	}
	rf, err := packaging.ParseReleaseFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rf.App != r.App || rf.Version != r.Version || rf.MD5 != r.MD5 || rf.SHA256 != r.SHA256 || rf.Size != r.Size || rf.Sig != r.Sig || rf.Serial != r.Serial {
		return nil, fmt.Errorf("%s is not the statement of row %s/%s as the catalog holds it (its binary or its signature changed since): run ota-release sign again", path, r.App, r.Env)
	}
	return raw, nil
}

// sideFiles are the patches and the chunk index published beside the row's binary
// (`ota-release delta`, `index`), under the binary's key plus their suffix.
func sideFiles(r catalog.Row) ([]File, error) {
	var out []File
	for _, pattern := range []string{".from-*.zst", ".from-*" + packaging.BlockPatchSuffix, packaging.ChunkSuffix} {
		paths, err := filepath.Glob(globEscape(r.Path()) + pattern)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			d, err := packaging.DigestFile(p)
			if err != nil {
				return nil, err
			}
			out = append(out, File{Key: r.Key() + strings.TrimPrefix(p, r.Path()), Path: p, Size: d.Size, MD5: d.MD5, Kind: KindSide})
		}
	}
	return out, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`)
	return r.Replace(s)
}
