// Package health judges a generation on trial, or a new OS image after its boot: the
// systemd units of its apps (over D-Bus), health.units, the HTTP and TCP probes, the hook.
package health

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/hooks"
)

// A generation on trial (or a new OS image after its boot) is judged in this order: the
// systemd units of its apps (apps.<name>.units) and health.units stay active for
// health.grace without failing or restarting while health.http and health.tcp answer; then
// hooks.health. Any of them configured puts a new generation on trial.

// Checker judges generations by the configuration's health checks.
type Checker struct {
	Cfg    *config.Config
	Log    *slog.Logger
	Status func(string) // one line of progress a person can read
}

// Gated: a new generation is judged before it is committed.
func (a Checker) Gated() bool {
	h := a.Cfg.Health
	return a.Cfg.Hooks.Health != "" || len(h.Units) > 0 || h.HTTP != "" || h.TCP != "" || len(a.UnitsOf(nil, nil)) > 0
}

// UnitsOf lists, sorted and once each, the units of the apps of to whose MD5 differs from
// from's (from nil: every app of to; to nil: every configured app).
func (a Checker) UnitsOf(from, to map[string]installer.App) []string {
	var out []string
	for app, c := range a.Cfg.Apps {
		if to != nil {
			x, ok := to[app]
			if !ok || from != nil && from[app].MD5 == x.MD5 {
				continue
			}
		}
		out = append(out, c.Units...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Judge runs the health checks of a generation with apps; env is the hook's.
func (a Checker) Judge(ctx context.Context, apps map[string]installer.App, env []string) error {
	units := a.UnitsOf(nil, apps)
	if apps == nil {
		units = nil
	}
	units = append(units, a.Cfg.Health.Units...)
	slices.Sort(units)
	units = slices.Compact(units)
	if len(units) > 0 || a.Cfg.Health.HTTP != "" || a.Cfg.Health.TCP != "" {
		if err := a.watch(ctx, units); err != nil {
			return err
		}
	}
	return hooks.Run(ctx, a.Log, a.Cfg.Hooks.Timeout, "health", a.Cfg.Hooks.Health, env)
}

// Restart restarts units through systemd.
func (a Checker) Restart(ctx context.Context, units []string) error {
	sd, err := connectSystemd(ctx, a.Log)
	if err != nil {
		return err
	}
	defer sd.Close()
	return sd.restart(ctx, units)
}

// watch polls the units and the probes until health.grace has passed: a unit that fails,
// stops or restarts ends the trial at once; at the end every unit must be active and every
// probe's last answer right.
func (a Checker) watch(ctx context.Context, units []string) error {
	var sd *systemd
	base := map[string]unitState{}
	if len(units) > 0 {
		var err error
		if sd, err = connectSystemd(ctx, a.Log); err != nil {
			return err
		}
		defer sd.Close()
		for _, u := range units {
			st, err := sd.state(ctx, u)
			if err != nil {
				return err
			}
			if st.load != "loaded" {
				return fmt.Errorf("unit %s is %s (LoadState), not loaded", u, st.load)
			}
			base[u] = st
		}
	}
	grace := a.Cfg.Health.Grace
	a.Status(fmt.Sprintf("health check: %d unit(s) and probes for %v", len(units), grace))
	end := time.Now().Add(grace)
	tick := min(time.Second, max(grace/4, 100*time.Millisecond))
	for {
		last := !time.Now().Before(end)
		for _, u := range units {
			st, err := sd.state(ctx, u)
			if err != nil {
				return err
			}
			if err := unitTrouble(u, base[u], st); err != nil {
				return fmt.Errorf("%v%s", err, sd.result(ctx, u))
			}
			if last && st.active != "active" {
				return fmt.Errorf("unit %s is still %s (%s) after health.grace %v", u, st.active, st.sub, grace)
			}
		}
		err := a.probe(ctx)
		if last {
			if err != nil {
				return fmt.Errorf("%v (still, after health.grace %v)", err, grace)
			}
			a.Log.Info("health: units stayed active and probes answered", "units", strings.Join(units, " "), "grace", grace)
			return nil
		}
		select {
		case <-time.After(tick):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// unitTrouble says what is wrong with a unit that was base when the trial started.
func unitTrouble(u string, base, st unitState) error {
	switch {
	case st.active == "failed":
		return fmt.Errorf("unit %s failed", u)
	case st.active == "inactive" || st.active == "deactivating":
		return fmt.Errorf("unit %s stopped (%s)", u, st.sub)
	case st.sub == "auto-restart":
		return fmt.Errorf("unit %s exited and waits to be restarted", u)
	case st.restarts > base.restarts:
		return fmt.Errorf("unit %s restarted %d time(s) during the trial", u, st.restarts-base.restarts)
	case base.invocation != "" && st.invocation != base.invocation:
		return fmt.Errorf("unit %s was restarted during the trial (a new invocation)", u)
	}
	return nil
}

// probeClient asks health.http: no proxy, no redirects, a fresh connection each time.
var probeClient = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// probe asks health.http and health.tcp once each.
func (a Checker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if u := a.Cfg.Health.HTTP; u != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return fmt.Errorf("health.http %s: %v", u, err)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return fmt.Errorf("health.http: %v", err)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != a.Cfg.Health.HTTPStatus {
			return fmt.Errorf("health.http %s answered %d, want %d (health.http_status)", u, resp.StatusCode, a.Cfg.Health.HTTPStatus)
		}
	}
	if addr := a.Cfg.Health.TCP; addr != "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("health.tcp: %v", err)
		}
		c.Close()
	}
	return nil
}
