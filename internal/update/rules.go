package update

import (
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/store"
)

// Rules are the plan rules of this agent (protocol.Rules): with trust keys an unsigned
// answer removes nothing unless trust.allow_unsigned_removals; the database's refusals and
// damage.
func (a *Engine) Rules(db *store.DB, state *store.State) (protocol.Rules, error) {
	r := protocol.Rules{RemoveUnlisted: len(a.Keys) == 0 || a.Cfg.Trust.AllowUnsignedRemovals}
	var err error
	if r.Refused, err = db.Refusals(); err != nil {
		return r, err
	}
	if state != nil {
		r.Damaged = state.Damaged
	}
	return r, nil
}
