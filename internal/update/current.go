package update

import (
	"maps"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/osimage"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/store"
)

// Current is what the device has and says: the installed set (directory slots and OS
// partitions), its facts, and the If-None-Match it sends.
type Current struct {
	State     *store.State
	Installed map[string]store.App
	Facts     protocol.Facts
	INM       string
}

func (a *Engine) Current(db *store.DB) (*Current, error) {
	state, err := db.State()
	if err != nil {
		return nil, err
	}
	c := &Current{State: state, Installed: map[string]store.App{}}
	if state != nil {
		for app, x := range state.Apps {
			c.Installed[app] = x
		}
	}
	osApps, trying, err := osimage.Installed(db)
	if err != nil {
		return nil, err
	}
	for app, x := range osApps {
		c.Installed[app] = x
	}
	if c.Facts, err = a.deviceFacts(); err != nil {
		return nil, err
	}
	refused, err := db.Refusals()
	if err != nil {
		return nil, err
	}
	g, err := db.Staged()
	if err != nil {
		return nil, err
	}
	if g != nil {
		for _, x := range g.Apps {
			trying = append(trying, x.MD5) // staged: waiting for its window
		}
	}
	for _, m := range append(trying, a.Proto.ShadowMD5s(db, c.Facts)...) {
		refused[m] = store.Refusal{} // on its way in, or shadowed by a pin: not to be sent again
	}
	claimed := maps.Clone(c.Installed)
	if state != nil {
		for app := range state.Damaged {
			delete(claimed, app) // found damaged on disk: the server sends it again
		}
	}
	c.INM = protocol.Etags(claimed, refused)
	return c, nil
}

// ManifestState is the record of slot s rebuilt from its manifest.
func ManifestState(s string, m *installer.Manifest, now time.Time) *store.State {
	return &store.State{Generation: store.Generation{N: m.Generation, Slot: s, Apps: m.Apps}, Status: store.StatusCommitted, Since: now}
}

// deviceFacts are the facts the configuration and the device's probes give.
func (a *Engine) deviceFacts() (protocol.Facts, error) {
	f, err := a.Cfg.DeviceFacts()
	return protocol.Facts(f), err
}
