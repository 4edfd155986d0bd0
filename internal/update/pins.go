package update

import (
	"context"
	"fmt"
	"strings"

	"github.com/ota-agent/ota-agent/internal/delivery"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// applyPins resolves the pins of the answer the job received: a full payload's members of
// other rows are hashed (their MD5 is the ETag that keeps them out next time) and removed
// from staging; the shadowed releases are recorded.
func (j *job) applyPins(ctx context.Context) error {
	members := j.got
	if j.mode != protocol.ModeFull {
		members = nil
	}
	pr, err := j.a.Proto.ResolvePins(ctx, j.c.Facts, j.c.INM, j.installed, j.details, members)
	if err != nil {
		return err
	}
	for _, m := range pr.Drop {
		app := pr.App[m]
		d := j.got[m]
		if d.MD5 == "" {
			f, err := j.st.Open(delivery.Incoming(m))
			if err != nil {
				return err
			}
			d, err = packaging.DigestReader(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("hash %s: %w", m, err)
			}
		}
		pr.Shadowed[d.MD5] = store.Shadow{App: app, Version: strings.TrimPrefix(m, app+"_"), Pin: j.c.Facts[app]}
		if err := j.st.Remove(delivery.Incoming(m)); err != nil {
			return err
		}
		delete(j.got, m)
	}
	return j.a.Proto.KeepShadows(j.db, j.c.Facts, pr.Shadowed)
}

// facts are the device facts the request said (computed again for an offline install).
func (j *job) facts() protocol.Facts {
	if j.c != nil {
		return j.c.Facts
	}
	f, _ := j.a.deviceFacts()
	return f
}
