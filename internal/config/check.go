package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// validateOperator checks the operator controls: rates, schedules, windows, budgets.
func (c *Config) validateOperator(bad func(string, error) error) error {
	if c.Verify.Rate <= 0 {
		return bad("verify::rate", fmt.Errorf("%d: want a rate above 0", c.Verify.Rate))
	}
	if _, err := parseSchedule(c.Net.Schedule); err != nil {
		return bad("net::schedule", err)
	}
	if _, err := parseWindows(c.Install.Windows); err != nil {
		return bad("install::windows", err)
	}
	if c.Install.MaxAttempts < 1 {
		return bad("install::max_attempts", fmt.Errorf("%d: want at least 1", c.Install.MaxAttempts))
	}
	if c.Trust.Threshold < 1 || len(c.Trust.Keys) > 0 && c.Trust.Threshold > len(c.Trust.Keys) {
		return bad("trust::threshold", fmt.Errorf("%d: want 1..%d (the number of trust.keys)", c.Trust.Threshold, max(1, len(c.Trust.Keys))))
	}
	if v := c.Trust.MinStatementVersion; v != 1 && v != 2 {
		return bad("trust::min_statement_version", fmt.Errorf("%d: want 1 or 2", v))
	}
	return c.validateHealth(bad)
}

// RequireServer fails (exit 2) when server.url is not set: check, run and the dry run need
// it; status, verify and the offline commands do not.
func (c *Config) RequireServer() error {
	if c.Server.URL != "" {
		return nil
	}
	where := c.File
	switch {
	case where == "" && c.Looked != "":
		where = "the built-in defaults (no configuration file: looked for " + c.Looked + "; --config FILE names one)"
	case where == "":
		where = "the built-in defaults"
	}
	return fmt.Errorf("%w: server.url in %s: missing: set the update endpoint, e.g. https://d111.cloudfront.net/package (or OTA_AGENT_SERVER_URL, --server-url)", ErrConfig, where)
}

// validateHealth checks apps.<name>.units and health.*.
func (c *Config) validateHealth(bad func(string, error) error) error {
	for app, ac := range c.Apps {
		for _, u := range ac.Units {
			if !UnitName(u) {
				return bad("apps::"+app+"::units", fmt.Errorf("%q is not a systemd unit name like scoreboard.service", u))
			}
		}
	}
	for _, u := range c.Health.Units {
		if !UnitName(u) {
			return bad("health::units", fmt.Errorf("%q is not a systemd unit name like scoreboard.service", u))
		}
	}
	if c.Health.HTTP != "" {
		if err := checkURL(c.Health.HTTP); err != nil {
			return bad("health::http", err)
		}
	}
	if s := c.Health.HTTPStatus; s < 100 || s > 599 {
		return bad("health::http_status", fmt.Errorf("%d is not an HTTP status", s))
	}
	if c.Health.TCP != "" {
		_, port, err := net.SplitHostPort(c.Health.TCP)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
			return bad("health::tcp", fmt.Errorf("%q: want host:port, e.g. 127.0.0.1:8080", c.Health.TCP))
		}
	}
	return nil
}

// UnitName tells whether u is a systemd unit's file name (name.type, no path).
func UnitName(u string) bool {
	i := strings.LastIndexByte(u, '.')
	if i < 1 || strings.ContainsAny(u, "/ \t") {
		return false
	}
	switch u[i+1:] {
	case "service", "socket", "target", "timer", "mount", "path", "scope", "slice", "swap", "device", "automount":
		return true
	}
	return false
}
