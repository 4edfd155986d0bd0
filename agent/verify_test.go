package agent

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
	"github.com/ota-agent/ota-agent/testserver"
)

// With trust keys the agent hashes received bytes with SHA-256 only and takes each binary's
// MD5 (its ETag) from the signed statement: in both payload modes the MD5 recorded is the
// installed file's real MD5, and the next check sends it and gets a 304.
func TestSignedInstallTakesMD5FromStatement(t *testing.T) {
	for _, mode := range []string{"full", "metadata"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, testserver.Options{})
			extra := ""
			if mode == "metadata" {
				extra = metadataMode(e)
			}
			c := e.config(extra)
			res, err := e.check(c)
			if err != nil || res.Result != ResultUpdated {
				t.Fatalf("first check: %+v %v", res, err)
			}
			a := e.agent(c)
			if a.hashMD5() {
				t.Fatal("with trust keys the agent still hashes MD5")
			}
			for app, x := range res.Apps {
				if want := fileMD5(t, filepath.Join(c.StateDir, "current", app)); x.MD5 != want {
					t.Errorf("%s recorded md5 %s, the installed file's is %s", app, x.MD5, want)
				}
			}
			if res, err := e.check(c); err != nil || res.Result != ResultUpToDate {
				t.Fatalf("second check: %+v %v", res, err)
			}
		})
	}
}

// A statement that does not name both digests cannot supply the MD5: verify asks for the
// file to be hashed with MD5 (errNeedMD5) and accepts it then; an MD5 that differs from the
// statement's is refused.
func TestVerifyWithoutMD5(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	a := e.agent(e.config(""))
	data := []byte("a binary with no sha256 in its statement")
	sum := md5.Sum(data)
	m := hex.EncodeToString(sum[:])
	priv, err := packaging.ParsePrivateKeyPEM(e.privPEM)
	if err != nil {
		t.Fatal(err)
	}
	entry := packaging.Entry{LatestVersion: "3.0.0", StatusCode: 200, MD5: m, Size: int64(len(data)), Serial: 90}
	entry.Sig, entry.KeyID = entry.Statement("tool").Sign(priv)
	got, _ := packaging.DigestReaderFor(strings.NewReader(string(data)), false)
	db := openTestDB(t, a)
	ctx := context.Background()
	if _, err := a.verify(ctx, db, Facts{}, "tool", entry, got, nil); !errors.Is(err, errNeedMD5) {
		t.Fatalf("without an MD5 and none in the statement: %v", err)
	}
	full, _ := packaging.DigestReader(strings.NewReader(string(data)))
	if rec, err := a.verify(ctx, db, Facts{}, "tool", entry, full, nil); err != nil || rec.MD5 != m {
		t.Fatalf("hashed with MD5: %+v %v", rec, err)
	}
	full.MD5 = strings.Repeat("0", 32)
	if _, err := a.verify(ctx, db, Facts{}, "tool", entry, full, nil); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "md5 mismatch") {
		t.Fatalf("a wrong MD5: %v", err)
	}
}

func openTestDB(t *testing.T, a *Agent) *store.DB {
	t.Helper()
	db, err := a.OpenDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
