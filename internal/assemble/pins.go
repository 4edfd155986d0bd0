package assemble

import (
	"context"
	"strings"

	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/store"
)

// applyPins resolves the pins of the answer received: a full payload's members of other
// rows are hashed (their MD5 is the ETag that keeps them out next time) and removed from
// staging; the shadowed releases are recorded.
func (a *Assembly) applyPins(ctx context.Context) error {
	members := a.Got
	if a.Mode != protocol.ModeFull {
		members = nil
	}
	pr, err := a.Proto.ResolvePins(ctx, a.Facts, a.INM, a.Installed, a.Details, members)
	if err != nil {
		return err
	}
	for _, m := range pr.Drop {
		app := pr.App[m]
		d, version := a.Got[m], strings.TrimPrefix(m, app+"_")
		if d.MD5 == "" {
			if d, err = a.digest(protocol.PlanItem{App: app, Version: version}); err != nil {
				return err
			}
		}
		pr.Shadowed[d.MD5] = store.Shadow{App: app, Version: version, Pin: a.Facts[app]}
		if err := a.St.Remove(delivery.Incoming(m)); err != nil {
			return err
		}
		delete(a.Got, m)
	}
	return a.Proto.KeepShadows(a.DB, a.Facts, pr.Shadowed)
}
