package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// A server that ignores If-None-Match and payloadType (the same recorded answer to every
// request) cannot install a release its signed ramp keeps from the device: in full-payload
// mode the question before the payload gets a tarball and the payload carries the release,
// which is deferred when it arrives; in metadata mode it is deferred before its binary, and
// held when offered again.
func TestRampHeldAgainstAServerIgnoringIt(t *testing.T) {
	for _, mode := range []string{"full", "metadata"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, testserver.Options{})
			cfg := e.config("")
			if _, err := e.check(cfg); err != nil {
				t.Fatal(err)
			}
			r := e.row("scoreboard", "prod")
			r.Version, r.Serial, r.File = "1.2.0", 40, "blobs/scoreboard_1.2.0"
			os.WriteFile(filepath.Join(e.cat.Dir(), r.File), []byte("ramped release"), 0o644)
			r.Class.Ramp = fmt.Sprintf("%d:100@3600", time.Now().AddDate(1, 0, 0).Unix()) // nobody's turn for a year
			r, err := e.cat.SignRow(r, e.privPEM)
			if err != nil {
				t.Fatal(err)
			}
			e.srv.SetRow(r)
			e.srv.FlushEdge()
			url := hostileServer(t, recorded(t, e, mode == "metadata")) + "/package"
			hostile := e.config("server:\n  url: " + url + "\n  payload: " + mode + "\n  firmware: {" + e.cat.Bucket + ": " + e.base + "/firmware/}\n")
			hostile.Device.ID = "gw-hostile"
			for i := range 2 {
				res, err := e.agent(hostile).Check(context.Background(), CheckOptions{})
				if err != nil || res.Apps["scoreboard"].Version != "1.0.0" || len(res.Deferred) != 1 || res.Deferred[0].App != "scoreboard" {
					t.Fatalf("check %d: %v, %+v", i, err, res)
				}
			}
		})
	}
}
