package agent

import (
	"path/filepath"
	"testing"

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
			if a.Trust.HashMD5() {
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
