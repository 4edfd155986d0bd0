package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/store"
)

// runHook runs a configured command through /bin/sh with a timeout; empty means no hook.
func (a *Agent) runHook(ctx context.Context, name, command string, env []string) error {
	if command == "" {
		return nil
	}
	timeout := a.cfg.Hooks.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	tail := strings.TrimSpace(string(out))
	if len(tail) > 300 {
		tail = "…" + tail[len(tail)-300:]
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("hooks.%s timed out after %v: %s", name, timeout, tail)
	}
	if err != nil {
		return fmt.Errorf("hooks.%s: %v: %s", name, err, tail)
	}
	a.log.Info("hook ran", "hook", name, "output", tail)
	return nil
}

// hookEnv describes a generation to a hook: OTA_SLOT, OTA_SLOT_DIR, OTA_GENERATION,
// OTA_ACTIVE_SLOT (before the switch), OTA_STATE_DIR and OTA_APP_<NAME>=<version>.
func (a *Agent) hookEnv(g *store.Generation, active string) []string {
	env := []string{
		"OTA_SLOT=" + g.Slot,
		"OTA_SLOT_DIR=" + a.slots.Path(g.Slot),
		"OTA_STAGING_DIR=" + a.slots.Path(g.Slot) + ".tmp",
		fmt.Sprintf("OTA_GENERATION=%d", g.N),
		"OTA_STATE_DIR=" + a.slots.Dir,
		"OTA_CURRENT=" + a.slots.Current(),
	}
	if active != "" {
		env = append(env, "OTA_ACTIVE_SLOT="+active, "OTA_ACTIVE_DIR="+a.slots.Path(active))
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
