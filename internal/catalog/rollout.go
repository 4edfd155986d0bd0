package catalog

import (
	"fmt"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/packaging/ramp"
)

// Rollout halts or resumes the phased rollout of the row (app, version, channel) at time at,
// and signs its statement again with the same serial. A halt keeps every device that does
// not have the release from installing it; a resume moves the ramp's start by the time it
// was halted, so the share of the fleet it lets in goes on from where it stopped. The
// catalog is saved.
func (c *Catalog) Rollout(app, version, channel, action string, at time.Time, privPEMs ...[]byte) (Row, error) {
	privs, err := parseKeys(privPEMs)
	if err != nil {
		return Row{}, err
	}
	i := -1
	for n, r := range c.Rows {
		if r.App == app && r.Version == version && strings.EqualFold(r.Env, channel) {
			i = n
		}
	}
	if i < 0 {
		return Row{}, fmt.Errorf("no row %s %s on channel %s in the catalog", app, version, channel)
	}
	r := &c.Rows[i]
	if r.Sig == "" || r.Class.V != 2 {
		return *r, fmt.Errorf("%s %s (%s) is not signed with a v2 statement: sign the catalog first (ota-release sign)", app, version, channel)
	}
	switch action {
	case "halt":
		if r.Class.Halted != 0 {
			return *r, fmt.Errorf("%s %s (%s) is already halted (since %s)", app, version, channel, time.Unix(r.Class.Halted, 0).UTC().Format(time.RFC3339))
		}
		r.Class.Halted = at.Unix()
	case "resume":
		if r.Class.Halted == 0 {
			return *r, fmt.Errorf("%s %s (%s) is not halted", app, version, channel)
		}
		if r.Class.Ramp != "" {
			rp, err := ramp.Parse(r.Class.Ramp)
			if err != nil {
				return *r, err
			}
			rp.Start += max(at.Unix()-r.Class.Halted, 0)
			r.Class.Ramp = rp.String()
		}
		r.Class.Halted = 0
	default:
		return *r, fmt.Errorf("rollout %q: want halt or resume", action)
	}
	if err := signRow(r, 2, privs); err != nil {
		return *r, err
	}
	return *r, c.Save()
}
