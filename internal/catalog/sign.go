package catalog

import (
	"cmp"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/packaging"
)

// SignRows signs every row's v2 statement with each key (a threshold needs several) and
// writes each statement as `<file>.release` beside the binary (protocol.md 3.3); see
// SignRowsVersion for the serials. The catalog is saved.
func (c *Catalog) SignRows(privPEMs ...[]byte) error {
	_, err := c.SignRowsVersion(2, privPEMs...)
	return err
}

// Serial says how SignRowsVersion numbered a row: "kept", "new" or "replaced".
type Serial struct {
	Row Row
	How string
}

// SignRowsVersion signs every row (v1 statements, without a channel, when v is 1). Serials
// follow the order of release per app, across its channels: a row keeps its serial while the
// statement published beside its binary still describes it (or, never signed, as the
// operator wrote it); a new row (no serial) or a replaced one (a signed row whose binary,
// version or class changed) is numbered above every serial of its app, several in one run in
// version order (2.0.0-beta < 2.0.0 < 2.1.0). So a device moved to the beta channel never
// takes the beta build for a rollback, and a row rolled forward always outranks what it
// replaced.
func (c *Catalog) SignRowsVersion(v int, privPEMs ...[]byte) ([]Serial, error) {
	privs, err := parseKeys(privPEMs)
	if err != nil {
		return nil, err
	}
	top := map[string]int64{}
	for _, r := range c.Rows {
		top[r.App] = max(top[r.App], r.Serial)
	}
	out := make([]Serial, len(c.Rows))
	var renumber []int
	for i := range c.Rows {
		out[i].How = c.Rows[i].serialState(v)
		if out[i].How != "kept" {
			renumber = append(renumber, i)
		}
	}
	sort.SliceStable(renumber, func(x, y int) bool {
		a, b := c.Rows[renumber[x]], c.Rows[renumber[y]]
		return a.App < b.App || a.App == b.App && CompareVersions(a.Version, b.Version) < 0
	})
	for _, i := range renumber {
		top[c.Rows[i].App]++
		c.Rows[i].Serial = top[c.Rows[i].App]
		c.Rows[i].Class.Ramp, c.Rows[i].Class.Halted = c.Ramp, 0 // a new release: phased by --ramp, or at once

	}
	for i := range c.Rows {
		if err := signRow(&c.Rows[i], v, privs); err != nil {
			return nil, err
		}
		out[i].Row = c.Rows[i]
	}
	return out, c.Save()
}

// serialState: "new" without a serial; "replaced" when the row was signed but the statement
// beside its binary is missing or no longer describes it; else "kept".
func (r Row) serialState(v int) string {
	if r.Serial == 0 {
		return "new"
	}
	if r.Sig == "" {
		return "kept" // a serial the operator wrote, never signed
	}
	f, err := os.Open(r.path + ".release")
	if err != nil {
		return "replaced"
	}
	defer f.Close()
	rf, err := packaging.ParseReleaseFile(f)
	class := packaging.Class{}
	if v >= 2 {
		class = packaging.RowClass(r.App, r.Env, r.DeviceAttr)
	}
	class.Ramp, class.Halted = rf.Class.Ramp, rf.Class.Halted // a rollout re-signed keeps its serial
	if err != nil || rf.App != r.App || rf.Version != r.Version || rf.SHA256 != r.SHA256 || rf.MD5 != r.MD5 ||
		rf.Size != r.Size || rf.Serial != r.Serial || !reflect.DeepEqual(rf.Class, class) {
		return "replaced"
	}
	return "kept"
}

// CompareVersions orders release versions: runs of digits compare as numbers, other runs as
// text, and a version that continues with a pre-release part ("-beta", "~rc1") comes before
// the same version without it. It returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		x, restA := versionPart(a)
		y, restB := versionPart(b)
		if c := compareParts(x, y); c != 0 {
			return c
		}
		a, b = restA, restB
	}
	switch {
	case a == b:
		return 0
	case a == "":
		return preRelease(b, 1)
	default:
		return preRelease(a, -1)
	}
}

// preRelease: what is left of the longer version; a pre-release suffix makes it older.
func preRelease(rest string, longer int) int {
	if rest[0] == '-' || rest[0] == '~' {
		return longer
	}
	return -longer
}

func versionPart(s string) (string, string) {
	digit := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
		i++
	}
	return s[:i], s[i:]
}

func compareParts(x, y string) int {
	xd, yd := x[0] >= '0' && x[0] <= '9', y[0] >= '0' && y[0] <= '9'
	if xd && yd {
		x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
		if len(x) != len(y) {
			return cmp.Compare(len(x), len(y))
		}
	}
	return cmp.Compare(x, y)
}

// SignRow loads r's digests, signs its v2 statement with its serial as given and writes its
// .release file: how a publisher prepares a roll-out (or a roll-back: an old binary with a
// new serial).
func (c *Catalog) SignRow(r Row, privPEMs ...[]byte) (Row, error) {
	return c.SignRowVersion(r, 2, privPEMs...)
}

// SignRowVersion is SignRow with a v1 statement (no channel) when v is 1.
func (c *Catalog) SignRowVersion(r Row, v int, privPEMs ...[]byte) (Row, error) {
	privs, err := parseKeys(privPEMs)
	if err != nil {
		return r, err
	}
	if err := r.Load(c.dir); err != nil {
		return r, err
	}
	return r, signRow(&r, v, privs)
}

func parseKeys(pems [][]byte) ([]ed25519.PrivateKey, error) {
	if len(pems) == 0 {
		return nil, errors.New("no signing key")
	}
	return packaging.ParseKeys(pems, packaging.ParsePrivateKeyPEM)
}

// signRow signs r's statement (v1, or v2 with the row's class) with every key and writes it
// as <binary>.release.
func signRow(r *Row, v int, privs []ed25519.PrivateKey) error {
	rollout := r.Class
	r.Class = packaging.Class{}
	if v >= 2 {
		r.Class = packaging.RowClass(r.App, r.Env, r.DeviceAttr)
		r.Class.Ramp, r.Class.Halted = rollout.Ramp, rollout.Halted
	} else if rollout.Ramp != "" || rollout.Halted != 0 {
		return fmt.Errorf("%s %s (%s): a phased rollout needs v2 statements (drop --v1)", r.App, r.Version, r.Env)
	}
	st := packaging.Statement{App: r.App, Version: r.Version, SHA256: r.SHA256, MD5: r.MD5, Size: r.Size, Serial: r.Serial, Class: r.Class}
	r.Sig, r.KeyID = st.Sign(privs[0])
	r.Sigs = packaging.SignAll(st.SignedBytes(), privs[1:]...)
	rel, _ := json.MarshalIndent(r.Release(), "", " ")
	return atomicfile.Write(r.path+".release", append(rel, '\n'), 0o644)
}
