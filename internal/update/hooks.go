package update

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/ota-agent/ota-agent/internal/hooks"
	"github.com/ota-agent/ota-agent/store"
)

// runHook runs a configured hook (hooks.Run) with the configured timeout.
func (a *Engine) runHook(ctx context.Context, name, command string, env []string) error {
	return hooks.Run(ctx, a.Log, a.Cfg.Hooks.Timeout, name, command, env)
}

// hookEnv describes a generation to a hook: OTA_SLOT, OTA_SLOT_DIR, OTA_GENERATION,
// OTA_ACTIVE_SLOT (before the switch), OTA_STATE_DIR and OTA_APP_<NAME>=<version>.
func (a *Engine) hookEnv(g *store.Generation, active string) []string {
	env := []string{
		"OTA_SLOT=" + g.Slot,
		"OTA_SLOT_DIR=" + a.Slots.Path(g.Slot),
		"OTA_STAGING_DIR=" + a.Slots.Path(g.Slot) + ".tmp",
		fmt.Sprintf("OTA_GENERATION=%d", g.N),
		"OTA_STATE_DIR=" + a.Slots.Dir,
		"OTA_CURRENT=" + a.Slots.Current(),
	}
	if active != "" {
		env = append(env, "OTA_ACTIVE_SLOT="+active, "OTA_ACTIVE_DIR="+a.Slots.Path(active))
	}
	apps := make([]string, 0, len(g.Apps))
	for app := range g.Apps {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		env = append(env, "OTA_APP_"+envName(app)+"="+g.Apps[app].Version)
	}
	env = append(env, "OTA_APPS="+strings.Join(apps, " "))
	return env
}

func envName(app string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, app)
}
