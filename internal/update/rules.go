package update

import (
	"github.com/ota-agent/ota-agent/internal/assemble"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/store"
)

// Rules are the plan rules of this agent (assemble.Env.Rules).
func (a *Engine) Rules(db *store.DB, state *store.State) (protocol.Rules, error) {
	return a.env(nil).Rules(db, state)
}

// env is what an assembly of this engine works with, for a request that said facts.
func (a *Engine) env(facts protocol.Facts) assemble.Env {
	return assemble.Env{Cfg: a.Cfg, Log: a.Log, HTTP: a.HTTP, Slots: a.Slots, Proto: a.Proto, Trust: a.Trust,
		Keyed: len(a.Keys) > 0, Status: func(s string) { a.Status(s) }, Step: a.step, Now: a.Clock.Now, Facts: facts,
		OS: a.OS()}
}
