package main

import (
	"cmp"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

func sign(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	key := fs.String("key", "", "Ed25519 private key(s) (PEM), comma-separated")
	dir := fs.String("catalog", "", "catalog directory")
	v1 := fs.Bool("v1", false, "write v1 statements (no channel), for agents older than v2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" || *dir == "" {
		return errors.New("sign: --key and --catalog are required")
	}
	pems, err := readFiles(*key)
	if err != nil {
		return err
	}
	c, err := catalog.Load(*dir)
	if err != nil {
		return err
	}
	v := 2
	if *v1 {
		v = 1
	}
	if err := c.SignRowsVersion(v, pems...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %d rows in %s (v%d statements, %d key(s))\n", len(c.Rows), *dir, v, len(pems))
	return nil
}

func timestamp(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	key := fs.String("key", "", "Ed25519 private key(s) (PEM), comma-separated")
	expires := fs.String("expires", "7d", "how long devices may rely on it: 7d, 36h")
	dir := fs.String("catalog", "", "catalog (bucket) directory: writes DIR/ota-timestamp.release")
	out := fs.String("out", "", "the file to write instead")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, err := docPath(*dir, *out, "ota-timestamp.release")
	if err != nil || *key == "" {
		return errors.Join(err, errors.New("timestamp: --key is required"))
	}
	d, err := days(*expires)
	if err != nil {
		return err
	}
	privs, err := readKeys(*key)
	if err != nil {
		return err
	}
	now := time.Now()
	ts := packaging.Timestamp{Issued: now.Unix(), Expires: now.Add(d).Unix()}
	ts.Sigs = packaging.SignAll(ts.SignedBytes(), privs...)
	if err := writeJSON(path, ts); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: issued %s, expires %s\n", path, now.UTC().Format(time.RFC3339), now.Add(d).UTC().Format(time.RFC3339))
	return nil
}

// rotate appends the next version of the key set to ota-keys.release.
func rotate(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	with := fs.String("sign-with", "", "private keys of the current set that sign the new version, comma-separated")
	add := fs.String("add", "", "public keys (PEM) to trust, comma-separated")
	remove := fs.String("remove", "", "public keys (PEM) to stop trusting, comma-separated")
	current := fs.String("current", "", "the devices' trust.keys (PEM), for the first version")
	threshold := fs.Int("threshold", 0, "signatures each statement and the next key set need (default: the current set's)")
	dir := fs.String("catalog", "", "catalog (bucket) directory: DIR/ota-keys.release")
	out := fs.String("out", "", "the file instead")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, err := docPath(*dir, *out, "ota-keys.release")
	if err != nil || *with == "" {
		return errors.Join(err, errors.New("keys rotate: --sign-with is required"))
	}
	file := &packaging.KeysFile{}
	if raw, err := os.ReadFile(path); err == nil {
		if file, err = packaging.ParseKeysFile(strings.NewReader(string(raw))); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	cur, err := currentSet(file, *current)
	if err != nil {
		return err
	}
	keys := map[string]ed25519.PublicKey{}
	for id, k := range cur.Keys {
		keys[id] = k
	}
	for _, l := range []struct {
		list string
		in   bool
	}{{*add, true}, {*remove, false}} {
		pubs, err := readPubs(l.list)
		if err != nil {
			return err
		}
		for _, p := range pubs {
			if l.in {
				keys[packaging.KeyID(p)] = p
			} else {
				delete(keys, packaging.KeyID(p))
			}
		}
	}
	next := packaging.SignedKeySet{Version: cur.Version + 1, Threshold: cmp.Or(max(*threshold, 0), cur.Threshold)}
	for _, k := range keys {
		next.Keys = append(next.Keys, base64.StdEncoding.EncodeToString(k))
	}
	privs, err := readKeys(*with)
	if err != nil {
		return err
	}
	next.Sigs = packaging.SignAll(next.SignedBytes(), privs...)
	if _, err := next.Set(); err != nil {
		return err
	}
	if err := cur.Check(fmt.Sprintf("key set v%d", next.Version), next.SignedBytes(), next.Sigs); err != nil {
		return fmt.Errorf("keys rotate: devices holding v%d would refuse v%d: %w", cur.Version, next.Version, err)
	}
	file.Versions = append(file.Versions, next)
	if err := writeJSON(path, file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: key set v%d, %d key(s), threshold %d, signed by %d of v%d\n", path, next.Version, len(next.Keys), next.Threshold, len(privs), cur.Version)
	return nil
}

// currentSet is the newest version in file, or the devices' configured keys (version 0).
func currentSet(file *packaging.KeysFile, current string) (packaging.KeySet, error) {
	if n := len(file.Versions); n > 0 {
		return file.Versions[n-1].Set()
	}
	pubs, err := readPubs(current)
	if err != nil || len(pubs) == 0 {
		return packaging.KeySet{}, errors.Join(err, errors.New("keys rotate: no ota-keys.release yet: name the devices' trust.keys with --current"))
	}
	return packaging.NewKeySet(0, 1, pubs...), nil
}

func docPath(dir, out, name string) (string, error) {
	switch {
	case out != "":
		return out, nil
	case dir != "":
		return filepath.Join(dir, name), nil
	}
	return "", errors.New("--catalog DIR or --out FILE is required")
}

// days parses 7d or a Go duration.
func days(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var d int
		if _, err := fmt.Sscan(n, &d); err == nil && d > 0 {
			return time.Duration(d) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: want 7d or a duration like 36h", s)
	}
	return d, nil
}

func readFiles(list string) ([][]byte, error) {
	var out [][]byte
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func readKeys(list string) ([]ed25519.PrivateKey, error) {
	pems, err := readFiles(list)
	if err != nil {
		return nil, err
	}
	return packaging.ParseKeys(pems, packaging.ParsePrivateKeyPEM)
}

func readPubs(list string) ([]ed25519.PublicKey, error) {
	pems, err := readFiles(list)
	if err != nil {
		return nil, err
	}
	return packaging.ParseKeys(pems, packaging.ParsePublicKeyPEM)
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
