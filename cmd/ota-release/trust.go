package main

import (
	"cmp"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/spf13/pflag"
)

func signFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	key := fs.StringSlice("key", nil, "Ed25519 private key (PEM); repeat (or comma-separate) for a threshold")
	dir := fs.String("catalog", "", "catalog directory")
	v1 := fs.Bool("v1", false, "write v1 statements (no channel), for agents older than v2")
	rampSpec := fs.String("ramp", "", "phase the rows this run numbers as new or replaced: a duration (48h, 2d: linear to the whole fleet) or steps (1%:2h,10%:12h,100%:48h)")
	start := fs.String("start", "", "when the ramp starts: RFC 3339 or unix seconds (default: now; start it one poll interval after publishing so every device knows its turn)")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if len(*key) == 0 || *dir == "" {
			return usageErr("sign", "--key and --catalog are required")
		}
		r, err := rampFlags(*rampSpec, *start, *v1)
		if err != nil {
			return err
		}
		pems, c, err := signing(*key, *dir)
		if err != nil {
			return err
		}
		v := 2
		if *v1 {
			v = 1
		}
		c.Ramp = r
		serials, err := c.SignRowsVersion(v, pems...)
		if err != nil {
			return err
		}
		for _, s := range serials {
			fmt.Fprintf(stdout, "  %-16s %-6s %-10s serial %d (%s)%s\n", s.Row.App, s.Row.Env, s.Row.Version, s.Row.Serial, s.How, describeRollout(s.Row.Class))
		}
		fmt.Fprintf(stdout, "signed %d rows in %s (v%d statements, %d key(s))\n", len(c.Rows), *dir, v, len(pems))
		return nil
	}
}

func timestampFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	key := fs.StringSlice("key", nil, "Ed25519 private key (PEM); repeat (or comma-separate) for a threshold")
	expires := fs.String("expires", "7d", "how long devices may rely on it: 7d, 36h")
	dir := fs.String("catalog", "", "catalog (bucket) directory: writes DIR/ota-timestamp.release")
	out := fs.String("out", "", "the file to write instead")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		path, err := docPath("timestamp", *dir, *out, "ota-timestamp.release")
		if err != nil {
			return err
		}
		if len(*key) == 0 {
			return usageErr("timestamp", "--key is required")
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
}

func rotateFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	with := fs.StringSlice("sign-with", nil, "private key of the current set that signs the new version (repeatable)")
	add := fs.StringSlice("add", nil, "public key (PEM) to trust (repeatable)")
	remove := fs.StringSlice("remove", nil, "public key (PEM) to stop trusting (repeatable); it must be in the current set")
	current := fs.StringSlice("current", nil, "the devices' trust.keys (PEM), for the first version (repeatable)")
	threshold := fs.Int("threshold", 0, "signatures each statement and the next key set need (default: the current set's)")
	dir := fs.String("catalog", "", "catalog (bucket) directory: DIR/ota-keys.release")
	out := fs.String("out", "", "the file instead")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		path, err := docPath("keys rotate", *dir, *out, "ota-keys.release")
		if err != nil {
			return err
		}
		if len(*with) == 0 {
			return usageErr("keys rotate", "--sign-with is required")
		}
		if *threshold < 0 {
			return usageErr("keys rotate", "--threshold %d: want 1 or more", *threshold)
		}
		return rotate(path, rotation{with: *with, add: *add, remove: *remove, current: *current, threshold: *threshold}, stdout)
	}
}

// rotation is what `keys rotate` was asked to do.
type rotation struct {
	with, add, remove, current []string
	threshold                  int
}

// rotate appends the next version of the key set to the ota-keys.release at path.
func rotate(path string, r rotation, stdout io.Writer) error {
	file := &packaging.KeysFile{}
	if raw, err := os.ReadFile(path); err == nil {
		if file, err = packaging.ParseKeysFile(strings.NewReader(string(raw))); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	cur, err := currentSet(file, r.current)
	if err != nil {
		return err
	}
	keys := maps.Clone(cur.Keys)
	adds, err := readPubs(r.add)
	if err != nil {
		return err
	}
	for _, p := range adds {
		keys[packaging.KeyID(p)] = p
	}
	removes, err := readPubs(r.remove)
	if err != nil {
		return err
	}
	for i, p := range removes {
		id := packaging.KeyID(p)
		if _, ok := cur.Keys[id]; !ok {
			return fmt.Errorf("keys rotate: --remove %s: key %s is not in the current set v%d (%s)", r.remove[i], id, cur.Version, strings.Join(cur.IDs(), ", "))
		}
		delete(keys, id)
	}
	next := packaging.SignedKeySet{Version: cur.Version + 1, Threshold: cmp.Or(r.threshold, cur.Threshold)}
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		next.Keys = append(next.Keys, base64.StdEncoding.EncodeToString(keys[id]))
	}
	privs, err := readKeys(r.with)
	if err != nil {
		return err
	}
	next.Sigs = packaging.SignAll(next.SignedBytes(), privs...)
	set, err := next.Set()
	if err != nil {
		return err
	}
	if err := cur.Check(fmt.Sprintf("key set v%d", next.Version), next.SignedBytes(), next.Sigs); err != nil {
		return fmt.Errorf("keys rotate: devices holding v%d would refuse v%d: %w", cur.Version, next.Version, err)
	}
	file.Versions = append(file.Versions, next)
	if err := writeJSON(path, file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: key set v%d, threshold %d, signed by %d of v%d\n", path, next.Version, next.Threshold, len(privs), cur.Version)
	for _, id := range set.IDs() {
		fmt.Fprintf(stdout, "  key %s\n", id)
	}
	return nil
}

// currentSet is the newest version in file, or the devices' configured keys (version 0).
func currentSet(file *packaging.KeysFile, current []string) (packaging.KeySet, error) {
	if n := len(file.Versions); n > 0 {
		return file.Versions[n-1].Set()
	}
	pubs, err := readPubs(current)
	if err != nil || len(pubs) == 0 {
		return packaging.KeySet{}, errors.Join(err, errors.New("keys rotate: no ota-keys.release yet: name the devices' trust.keys with --current"))
	}
	return packaging.NewKeySet(0, 1, pubs...), nil
}

func docPath(cmd, dir, out, name string) (string, error) {
	switch {
	case out != "" && dir != "":
		return "", usageErr(cmd, "--catalog and --out: give one")
	case out != "":
		return out, nil
	case dir != "":
		return filepath.Join(dir, name), nil
	}
	return "", usageErr(cmd, "--catalog DIR or --out FILE is required")
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

func readFiles(list []string) ([][]byte, error) {
	var out [][]byte
	for _, p := range list {
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

func readKeys(list []string) ([]ed25519.PrivateKey, error) {
	pems, err := readFiles(list)
	if err != nil {
		return nil, err
	}
	return packaging.ParseKeys(pems, packaging.ParsePrivateKeyPEM)
}

func readPubs(list []string) ([]ed25519.PublicKey, error) {
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
	return atomicfile.Write(path, append(raw, '\n'), 0o644)
}
