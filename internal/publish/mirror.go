package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

// Mirror keeps a local copy of a deployment as a catalog directory, so that the test server
// serves what the table and the bucket hold: DIR/objects/<key> for every object (fetched again
// only when its ETag changes), the trust documents at DIR/<name>, and DIR/catalog.json with a
// row per item.
type Mirror struct {
	D    *Deployment
	Dir  string
	seen string // fingerprint of the last copy: items and ETags
}

// Sync copies what changed since the last call; changed says whether the catalog did.
// Rows whose object is missing are left out (a device would get a 404 for them) and named
// in skipped.
func (m *Mirror) Sync(ctx context.Context) (changed bool, skipped []string, err error) {
	objs, err := m.D.Objects(ctx)
	if err != nil {
		return false, nil, err
	}
	items, err := m.D.Items(ctx)
	if err != nil {
		return false, nil, err
	}
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Key(), b.Key()) })
	fp, _ := json.Marshal([]any{objs, items})
	sum := sha256.Sum256(fp)
	if string(sum[:]) == m.seen {
		return false, nil, nil
	}
	root, err := m.open()
	if err != nil {
		return false, nil, err
	}
	defer root.Close()
	if err := m.fetch(ctx, root, objs); err != nil {
		return false, nil, err
	}
	c := catalog.Catalog{Bucket: m.D.Bucket}
	for _, it := range items {
		if _, ok := objs[it.Object()]; !ok {
			skipped = append(skipped, it.Key())
			continue
		}
		if it.Release == "" { // written by hand, or by another tool: the statement beside it
			if raw, err := root.ReadFile("objects/" + it.Object() + ".release"); err == nil {
				if _, err := packaging.ParseReleaseFile(bytes.NewReader(raw)); err == nil {
					it.Release = string(raw)
				}
			}
		}
		r, err := it.Row("objects/" + it.Object())
		if err != nil {
			return false, nil, err
		}
		c.Rows = append(c.Rows, r)
	}
	raw, _ := json.MarshalIndent(c, "", " ")
	if err := writeIn(root, "catalog.json", append(raw, '\n')); err != nil {
		return false, nil, err
	}
	m.seen = string(sum[:])
	return true, skipped, nil
}

func (m *Mirror) open() (*os.Root, error) {
	if err := os.MkdirAll(filepath.Join(m.Dir, "objects"), 0o755); err != nil {
		return nil, err
	}
	return os.OpenRoot(m.Dir)
}

// fetch brings every object whose ETag changed, and removes the copies of those gone.
func (m *Mirror) fetch(ctx context.Context, root *os.Root, objs map[string]Stored) error {
	etags := map[string]string{}
	if raw, err := root.ReadFile("etags.json"); err == nil {
		json.Unmarshal(raw, &etags)
	}
	for key, o := range objs {
		if packaging.ValidFileName(key) != nil {
			continue // not a key the firmware CDN serves
		}
		if etags[key] == o.ETag {
			continue
		}
		body, err := m.D.Get(ctx, key)
		if err != nil {
			return err
		}
		err = atomicfile.WriteIn(root, "objects/"+key, 0o644, func(w io.Writer) error {
			_, err := io.Copy(w, body)
			return err
		})
		body.Close()
		if err != nil {
			return fmt.Errorf("copy s3://%s/%s: %w", m.D.Bucket, key, err)
		}
		etags[key] = o.ETag
	}
	for key := range etags {
		if _, ok := objs[key]; !ok {
			root.Remove("objects/" + key)
			delete(etags, key)
		}
	}
	for _, name := range TrustDocs {
		raw, err := root.ReadFile("objects/" + name)
		if err != nil {
			root.Remove(name)
			continue
		}
		if err := writeIn(root, name, raw); err != nil {
			return err
		}
	}
	raw, _ := json.Marshal(etags)
	return writeIn(root, "etags.json", raw)
}

func writeIn(root *os.Root, name string, data []byte) error {
	return atomicfile.WriteIn(root, name, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
