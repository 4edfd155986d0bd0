package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
)

// TestPinWinsOverAttribute: device.pins for an app an attribute also selects installs the
// pinned row (the reference sends both rows), in both payload modes and as a dry run; the
// next check downloads nothing and is a 304 (the other row's MD5 goes out as shadowed; a
// reference server in metadata mode names no MD5, so there its 200 changes nothing).
// Dropping the pin offers the attribute's older row: a rollback, refused.
func TestPinWinsOverAttribute(t *testing.T) {
	for _, mode := range []string{"full", "metadata"} {
		for _, ref := range []bool{false, true} {
			name := mode
			if ref {
				name += "/reference-only"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t, testserver.Options{ReferenceOnly: ref})
				payload := "server:\n  url: " + e.base + "/package\n  payload: " + mode + "\n  firmware: {" + e.cat.Bucket + ": " + e.base + "/firmware/}\n"
				pinned := e.config(payload + "device:\n  cpu_arch: armv8\n  attributes: {gamer: prod, cellular: prod}\n  pins: {scoreboard: beta}\n")
				dry, err := e.agent(pinned).Check(context.Background(), CheckOptions{DryRun: true})
				if err != nil || dry.Plan == nil {
					t.Fatalf("dry run: %+v %v", dry, err)
				}
				for _, d := range dry.Plan.Download {
					if d.App == "scoreboard" && d.Version != "2.0.0" {
						t.Fatalf("dry run plans scoreboard %s, want the pinned 2.0.0", d.Version)
					}
				}
				res, err := e.check(pinned)
				if err != nil || res.Apps["scoreboard"].Version != "2.0.0" {
					t.Fatalf("pinned check: %+v %v", res, err)
				}
				before := e.srv.Stats()
				res, err = e.check(pinned)
				if err != nil || res.Result != ResultUpToDate || res.Note != "" && !(ref && mode == "metadata") {
					t.Fatalf("second check: %+v %v", res, err)
				}
				if got := e.srv.Stats().BytesByPath["/firmware"] - before.BytesByPath["/firmware"]; got != 0 {
					t.Fatalf("the second check downloaded %d bytes", got)
				}
				verifyState(t, e.agent(pinned))
				unpinned := e.config(payload)
				if _, err := e.check(unpinned); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "rollback refused") {
					t.Fatalf("without the pin: %v", err)
				}
			})
		}
	}
}

// TestPinnedAppTakesOnlyItsChannel: a server that answers the pinned row with another
// channel's (validly signed v2) statement is refused: an attribute's row cannot stand in
// for the pin.
func TestPinnedAppTakesOnlyItsChannel(t *testing.T) {
	e := newEnv(t, testserver.Options{})
	prod := e.row("scoreboard", "prod")
	prod.Env = "beta" // the server lies: prod's bytes and statement as the beta row
	if err := e.srv.SetRow(prod); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(metadataMode(e) + "device:\n  cpu_arch: armv8\n  attributes: {gamer: prod}\n  pins: {scoreboard: beta}\n")
	_, err := e.check(cfg)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "device.pins pins scoreboard") {
		t.Fatalf("another channel's statement for a pinned app: %v", err)
	}
}
