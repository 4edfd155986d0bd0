package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/packaging"
)

// DefaultConfigFile is where a device keeps its configuration.
const DefaultConfigFile = "/etc/ota-agent/config.yaml"

// ErrConfig marks a configuration or usage error (exit 2).
var ErrConfig = fault.ErrConfig

// Config is the agent's configuration, declared once: each `key` tag is the YAML key (and,
// upper-cased with the parents', the OTA_AGENT_* variable), each `default` tag its default.
// dist/config.yaml and the README table list exactly these keys (a test checks it).
type Config struct {
	File string `key:"-"` // the file it was read from ("" when none)
	Root string `key:"-"` // sysroot prefix of every path (image builders)
	// Looked is the default file looked for and not found ("" when one was read or named).
	Looked string `key:"-"`
	// Warnings are what the loading noticed and ignored (unknown OTA_AGENT_* variables).
	Warnings []string `key:"-"`

	Server struct {
		URL          string            `key:"url"`
		Payload      string            `key:"payload" default:"auto"` // auto | full | metadata
		Firmware     map[string]string `key:"firmware"`               // S3 bucket → CDN base URL
		CAFile       string            `key:"ca_file"`
		PinSHA256    []string          `key:"pin_sha256"`
		ClientCert   string            `key:"client_cert"`
		ClientKey    string            `key:"client_key"`
		Proxy        string            `key:"proxy"`
		Timeout      time.Duration     `key:"timeout" default:"60s"`
		StallTimeout time.Duration     `key:"stall_timeout" default:"45s"` // a body without progress this long is ended
		MinRate      ByteRate          `key:"min_rate" default:"1KiB"`     // a body averaging less over 2 minutes is ended (slow retrieval)
	} `key:"server"`
	Device struct {
		CPUArch    string            `key:"cpu_arch" default:"auto"`
		OS         string            `key:"os" default:"prod"`
		Attributes map[string]string `key:"attributes"`
		Probes     map[string]string `key:"probes"`
		Pins       map[string]string `key:"pins"`
		ID         string            `key:"id"` // who the device is to phased rollouts ("" = /etc/machine-id)
	} `key:"device"`
	StateDir   string `key:"state_dir" default:"/var/lib/ota-agent"`
	RuntimeDir string `key:"runtime_dir" default:"/run/ota-agent"` // tmpfs: the record of checks that changed nothing (agent.db takes it hourly)
	Trust      struct {
		Keys          []string `key:"keys"`
		AllowUnsigned bool     `key:"allow_unsigned" default:"false"`
		// With trust.keys, an app the server's (unsigned) answer leaves out is kept unless
		// this is true: nothing unsigned may remove an app.
		AllowUnsignedRemovals bool          `key:"allow_unsigned_removals" default:"false"`
		Threshold             int           `key:"threshold" default:"1"`             // signatures of trust.keys each statement (and the first key set) needs
		MinStatementVersion   int           `key:"min_statement_version" default:"1"` // 2: refuse statements that do not name their channel
		MaxStaleness          time.Duration `key:"max_staleness" default:"0"`         // >0: fetch ota-timestamp.release each check; stale after this long without a fresh one
		KeysRefresh           time.Duration `key:"keys_refresh" default:"24h"`        // fetch ota-keys.release this often (and at an unknown key id; 0: only then)
	} `key:"trust"`
	Poll struct {
		Interval time.Duration `key:"interval" default:"6h"`
		Jitter   time.Duration `key:"jitter" default:"30m"`
		Align    bool          `key:"align" default:"true"` // devices sending the same request check in the same minute (NextCheck)
	} `key:"poll"`
	Hooks struct {
		Health     string        `key:"health"`
		PreInstall string        `key:"pre_install"`
		PostCommit string        `key:"post_commit"`
		Timeout    time.Duration `key:"timeout" default:"2m"`
		MaxTrials  int           `key:"max_trials" default:"2"`
	} `key:"hooks"`
	Log struct {
		Format string `key:"format" default:"text"` // text | json
		Level  string `key:"level" default:"info"`
	} `key:"log"`
	Slots struct {
		OS OSSlots `key:"os"`
	} `key:"slots"`
	Net struct {
		MaxRate  ByteRate `key:"max_rate" default:"0"` // bytes per second of all transfers together (0: no cap)
		Schedule []string `key:"schedule"`             // "22:00-06:00 0", "* 64KiB/s": the first that matches, device-local time
	} `key:"net"`
	Install struct {
		MaxAttempts int      `key:"max_attempts" default:"3"`     // failed installs of one release before it is refused
		SpaceMargin ByteRate `key:"space_margin" default:"16MiB"` // kept free on the state directory's filesystem beyond what an update needs
		MaxFileSize ByteRate `key:"max_file_size" default:"4GiB"` // the largest binary (or OS image) accepted, before a byte of it is written
		Windows     []string `key:"windows"`                      // "Sat,Sun 02:00-05:00", "01:00-04:00": when a sealed update may switch ([] = any time)
	} `key:"install"`
	Metrics struct {
		Textfile string `key:"textfile"` // node_exporter textfile collector file ("" = none)
	} `key:"metrics"`
	Verify struct {
		Interval time.Duration `key:"interval" default:"24h"` // the daemon re-verifies the active slot this often (0: never)
		Rate     ByteRate      `key:"rate" default:"4MiB"`    // bytes per second read while doing it
	} `key:"verify"`
	Delta struct {
		Enabled   bool     `key:"enabled" default:"true"`    // ask the firmware CDN for a patch from the installed file first
		MaxSource ByteRate `key:"max_source" default:"4MiB"` // larger installed files take a block patch (bounded memory); a whole-file patch holds the old file and its window in memory
	} `key:"delta"`
	Report struct {
		URL        string   `key:"url"`        // device reports are posted here (https; "" = none)
		TokenFile  string   `key:"token_file"` // a bearer token for it, in a root-owned file
		CAFile     string   `key:"ca_file"`
		PinSHA256  []string `key:"pin_sha256"`
		ClientCert string   `key:"client_cert"`
		ClientKey  string   `key:"client_key"`
		MaxEvents  int      `key:"max_events" default:"1000"` // the outbox's bound: the oldest events beyond it are dropped and counted
	} `key:"report"`
	Apps   map[string]AppConfig `key:"apps"` // apps.<name>.units: systemd units restarted when <name> changes
	Health struct {
		Units      []string      `key:"units"`                     // systemd units that must stay active through a trial
		Grace      time.Duration `key:"grace" default:"30s"`       // how long units must stay active, without restarting
		HTTP       string        `key:"http"`                      // URL probed during the trial ("" = none)
		HTTPStatus int           `key:"http_status" default:"200"` // the status it must answer
		TCP        string        `key:"tcp"`                       // host:port that must accept a connection ("" = none)
	} `key:"health"`
}

// AppConfig is what the device does around one app (apps.<name>).
type AppConfig struct {
	Units []string // systemd units running it: restarted after a switch that changes it
}

// OSSlots configure where the os_<arch> image goes (A/B partitions).
type OSSlots struct {
	Backend     string            `key:"backend" default:"dir"` // dir | partition
	Devices     map[string]string `key:"devices"`               // a, b → device or file
	Bootloader  string            `key:"bootloader"`            // uboot | grub
	Grubenv     string            `key:"grubenv" default:"/boot/grub/grubenv"`
	FwEnvConfig string            `key:"fw_env_config" default:"/etc/fw_env.config"`
	BootIDFile  string            `key:"boot_id_file" default:"/proc/sys/kernel/random/boot_id"` // changes at every boot
	Reboot      string            `key:"reboot"`                                                 // run after an OS image is set to try ("" = by hand)
	Checkpoint  ByteRate          `key:"checkpoint" default:"16MiB"`                             // an image streamed into its partition is flushed and its resume point recorded this often
}

// ByteRate is a rate in bytes per second, written 4MiB, 512KiB or 1000000.
type ByteRate int64

func (c *Config) validate(bad func(string, error) error) error {
	c.Device.CPUArch, c.Device.OS, c.Log.Level = strings.ToLower(c.Device.CPUArch), strings.ToLower(c.Device.OS), strings.ToLower(c.Log.Level)
	if err := c.validateOperator(bad); err != nil {
		return err
	}
	if c.Hooks.MaxTrials < 1 {
		return bad("hooks::max_trials", fmt.Errorf("%d: want at least 1", c.Hooks.MaxTrials))
	}
	if c.Server.URL != "" { // required only by what asks the server (RequireServer)
		if err := checkURL(c.Server.URL); err != nil {
			return bad("server::url", err)
		}
	}
	if err := c.checkReport(); err != nil {
		return bad("report::url", err)
	}
	for bucket, base := range c.Server.Firmware {
		if err := checkURL(base); err != nil {
			return bad("server::firmware::"+bucket, err)
		}
	}
	switch c.Server.Payload {
	case "auto", "full", "metadata":
	default:
		return bad("server::payload", fmt.Errorf("%q: want auto, full or metadata", c.Server.Payload))
	}
	if c.Device.CPUArch == "" || strings.ContainsAny(c.Device.CPUArch, "&=' ") {
		return bad("device::cpu_arch", fmt.Errorf("%q: want auto or an architecture like armv7, armv8", c.Device.CPUArch))
	}
	for _, kv := range []struct {
		key string
		m   map[string]string
	}{{"device::attributes", c.Device.Attributes}, {"device::pins", c.Device.Pins}} {
		for name, ch := range kv.m {
			if !token(name) || !token(ch) {
				return bad(kv.key+"::"+name, fmt.Errorf("%q: names and channels are letters, digits, _ . -", ch))
			}
		}
	}
	if !token(c.Device.OS) {
		return bad("device::os", fmt.Errorf("%q: a channel is letters, digits, _ . -", c.Device.OS))
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return bad("state_dir", fmt.Errorf("%q: want an absolute path", c.StateDir))
	}
	switch o := c.Slots.OS; o.Backend {
	case "dir":
	case "partition":
		if o.Devices["a"] == "" || o.Devices["b"] == "" || len(o.Devices) != 2 {
			return bad("slots::os::devices", errors.New("want exactly {a: <device>, b: <device>}"))
		}
		if o.Bootloader != "uboot" && o.Bootloader != "grub" {
			return bad("slots::os::bootloader", fmt.Errorf("%q: want uboot or grub", o.Bootloader))
		}
	default:
		return bad("slots::os::backend", fmt.Errorf("%q: want dir or partition", o.Backend))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log::format", fmt.Errorf("%q: want text or json", c.Log.Format))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log::level", fmt.Errorf("%q: want debug, info, warn or error", c.Log.Level))
	}
	if c.Poll.Interval < time.Second {
		return bad("poll::interval", fmt.Errorf("%v: want at least 1s (a fleet polls every few hours)", c.Poll.Interval))
	}
	for app := range c.Device.Pins {
		if l := strings.ToLower(app); l == "cpuarch" || l == "os" || l == "payloadtype" || strings.HasPrefix(l, "attr") {
			return bad("device::pins::"+app, errors.New("a pin cannot be named cpuarch, os, payloadtype or attr*"))
		}
	}
	return nil
}

func token(s string) bool { return packaging.ValidToken(s) }

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return nil
}

// checkReport: report.url is an http(s) URL (https outside a closed network: reports name the
// device and what it runs), and the outbox holds at least a few events.
func (c *Config) checkReport() error {
	if c.Report.URL == "" {
		return nil
	}
	if err := checkURL(c.Report.URL); err != nil {
		return err
	}
	if c.Report.MaxEvents < 10 {
		return fmt.Errorf("report.max_events is %d: want at least 10", c.Report.MaxEvents)
	}
	return nil
}

// InRoot maps a path of the target system into the sysroot: it never leaves root.
func InRoot(root, p string) string {
	if root == "" {
		return p
	}
	return filepath.Join(root, filepath.Clean("/"+p))
}

// Path maps a configured path into the sysroot.
func (c *Config) Path(p string) string { return InRoot(c.Root, p) }

// Named is a configured file under the sysroot; "" (none configured) stays "".
func (c *Config) Named(p string) string {
	if p == "" {
		return ""
	}
	return c.Path(p)
}

// hosts are the endpoint's and the firmware CDNs' host:port, where redirects may lead.
func (c *Config) Hosts() []string {
	var out []string
	for _, raw := range append([]string{c.Server.URL}, mapValues(c.Server.Firmware)...) {
		if u, err := url.Parse(raw); err == nil {
			out = append(out, u.Host)
		}
	}
	return out
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
