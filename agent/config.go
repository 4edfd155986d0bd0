package agent

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// DefaultConfigFile is where a device keeps its configuration.
const DefaultConfigFile = "/etc/ota-agent/config.yaml"

// ErrConfig marks a configuration or usage error (exit 2).
var ErrConfig = errors.New("configuration error")

// Config is the agent's configuration (README, "Configuration reference").
type Config struct {
	File string // the file it was read from ("" when none)
	Root string // sysroot prefix of every path (image builders)

	Server struct {
		URL        string
		Payload    string // auto | full | metadata
		Firmware   map[string]string
		CAFile     string
		PinSHA256  []string
		ClientCert string
		ClientKey  string
		Proxy      string
		Timeout    time.Duration
		// StallTimeout ends a body that makes no progress for this long.
		StallTimeout time.Duration
	}
	Device struct {
		CPUArch    string
		OS         string
		Attributes map[string]string
		Probes     map[string]string
		Pins       map[string]string
	}
	StateDir string
	Trust    struct {
		Keys          []string
		AllowUnsigned bool
	}
	Poll struct {
		Interval time.Duration
		Jitter   time.Duration
		Align    bool // devices sending the same request check in the same minute (NextCheck)
	}
	Hooks struct {
		Health     string
		PreInstall string
		PostCommit string
		Timeout    time.Duration
		MaxTrials  int
	}
	Log struct {
		Format string // text | json
		Level  string
	}
	Slots struct {
		OS OSSlots
	}
	Verify struct {
		Interval time.Duration // the daemon re-verifies the active slot this often (0: never)
		Rate     int64         // bytes per second read while doing it
	}
}

// OSSlots configure where the os_<arch> image goes (issue: real A/B partitions).
type OSSlots struct {
	Backend     string            // dir (default) | partition
	Devices     map[string]string // a, b → device or file
	Bootloader  string            // uboot | grub
	Grubenv     string
	FwEnvConfig string
	BootIDFile  string // changes at every boot
	Reboot      string // command run after an OS image is set to try ("" = reboot by hand)
}

// sep is viper's key delimiter: bucket names and attribute names may contain dots.
const sep = "::"

// known keys and their defaults; map-valued keys accept any sub-key.
var defaults = map[string]any{
	"server::url":              "",
	"server::payload":          "auto",
	"server::ca_file":          "",
	"server::pin_sha256":       []string{},
	"server::client_cert":      "",
	"server::client_key":       "",
	"server::proxy":            "",
	"server::timeout":          "60s",
	"server::stall_timeout":    "45s",
	"device::cpu_arch":         "auto",
	"device::os":               "prod",
	"state_dir":                "/var/lib/ota-agent",
	"trust::keys":              []string{},
	"trust::allow_unsigned":    false,
	"poll::interval":           "6h",
	"poll::jitter":             "30m",
	"poll::align":              true,
	"hooks::health":            "",
	"hooks::pre_install":       "",
	"hooks::post_commit":       "",
	"hooks::timeout":           "2m",
	"hooks::max_trials":        2,
	"log::format":              "text",
	"log::level":               "info",
	"slots::os::backend":       "dir",
	"slots::os::bootloader":    "",
	"slots::os::grubenv":       "/boot/grub/grubenv",
	"slots::os::fw_env_config": "/etc/fw_env.config",
	"slots::os::boot_id_file":  "/proc/sys/kernel/random/boot_id",
	"slots::os::reboot":        "",
	"verify::interval":         "24h",
	"verify::rate":             "4MiB",
}

var mapKeys = []string{"server::firmware", "device::attributes", "device::probes", "device::pins", "slots::os::devices"}

// Overrides are command-line values that win over the file and the environment.
type Overrides map[string]string

// LoadConfig reads file (DefaultConfigFile under root when empty), then OTA_AGENT_* variables
// (OTA_AGENT_SERVER_URL, OTA_AGENT_DEVICE_OS, ...), then overrides. Every error names the key
// and the file.
func LoadConfig(file, root string, over Overrides) (*Config, error) {
	v := viper.NewWithOptions(viper.KeyDelimiter(sep), viper.EnvKeyReplacer(strings.NewReplacer(sep, "_")))
	v.SetEnvPrefix("OTA_AGENT")
	v.AutomaticEnv()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	explicit := file != ""
	if !explicit {
		file = InRoot(root, DefaultConfigFile)
	}
	if err := readYAML(v, file); err != nil {
		if explicit || !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: read %s: %v", ErrConfig, file, err)
		}
		file = ""
	}
	for k, val := range over {
		v.Set(strings.ReplaceAll(k, ".", sep), val)
	}
	c := &Config{File: file, Root: root}
	bad := func(key string, err error) error {
		return fmt.Errorf("%w: %s in %s: %v", ErrConfig, strings.ReplaceAll(key, sep, "."), source(key, file, over), err)
	}
	if k := unknownKey(v.AllKeys()); k != "" {
		return nil, bad(k, errors.New("unknown key (see dist/config.yaml for every key)"))
	}
	var err error
	str := func(k string) string { return strings.TrimSpace(v.GetString(k)) }
	dur := func(k string) time.Duration {
		if err != nil {
			return 0
		}
		d, e := time.ParseDuration(v.GetString(k))
		if e != nil || d < 0 {
			err = bad(k, fmt.Errorf("%q is not a duration like 30s, 5m or 6h", v.GetString(k)))
		}
		return d
	}
	strMap := func(k string) map[string]string {
		if err != nil {
			return nil
		}
		m, e := stringMap(v.Get(k))
		if e != nil {
			err = bad(k, e)
		}
		return m
	}
	list := func(k string) []string {
		raw := v.Get(k)
		switch t := raw.(type) {
		case string:
			return strings.Fields(t)
		case []any:
			out := make([]string, 0, len(t))
			for _, x := range t {
				out = append(out, fmt.Sprint(x))
			}
			return out
		case []string:
			return t
		}
		if raw != nil {
			err = bad(k, fmt.Errorf("want a list, got %T", raw))
		}
		return nil
	}
	c.Server.URL = str("server::url")
	c.Server.Payload = str("server::payload")
	c.Server.Firmware = strMap("server::firmware")
	c.Server.CAFile = str("server::ca_file")
	c.Server.PinSHA256 = list("server::pin_sha256")
	c.Server.ClientCert = str("server::client_cert")
	c.Server.ClientKey = str("server::client_key")
	c.Server.Proxy = str("server::proxy")
	c.Server.Timeout = dur("server::timeout")
	c.Server.StallTimeout = dur("server::stall_timeout")
	c.Device.CPUArch = strings.ToLower(str("device::cpu_arch"))
	c.Device.OS = strings.ToLower(str("device::os"))
	c.Device.Attributes = strMap("device::attributes")
	c.Device.Probes = strMap("device::probes")
	c.Device.Pins = strMap("device::pins")
	c.StateDir = str("state_dir")
	c.Trust.Keys = list("trust::keys")
	c.Poll.Interval = dur("poll::interval")
	c.Poll.Jitter = dur("poll::jitter")
	c.Hooks.Health = str("hooks::health")
	c.Hooks.PreInstall = str("hooks::pre_install")
	c.Hooks.PostCommit = str("hooks::post_commit")
	c.Hooks.Timeout = dur("hooks::timeout")
	c.Log.Format = str("log::format")
	c.Log.Level = strings.ToLower(str("log::level"))
	c.Slots.OS = OSSlots{Backend: str("slots::os::backend"), Devices: strMap("slots::os::devices"), Bootloader: str("slots::os::bootloader"),
		Grubenv: str("slots::os::grubenv"), FwEnvConfig: str("slots::os::fw_env_config"), BootIDFile: str("slots::os::boot_id_file"), Reboot: str("slots::os::reboot")}
	if err != nil {
		return nil, err
	}
	if b, e := boolValue(v.Get("poll::align")); e != nil {
		return nil, bad("poll::align", e)
	} else {
		c.Poll.Align = b
	}
	if b, e := boolValue(v.Get("trust::allow_unsigned")); e != nil {
		return nil, bad("trust::allow_unsigned", e)
	} else {
		c.Trust.AllowUnsigned = b
	}
	c.Verify.Interval = dur("verify::interval")
	if err != nil {
		return nil, err
	}
	if n, e := byteRate(v.GetString("verify::rate")); e != nil {
		return nil, bad("verify::rate", e)
	} else {
		c.Verify.Rate = n
	}
	if n, e := intValue(v.Get("hooks::max_trials")); e != nil || n < 1 {
		return nil, bad("hooks::max_trials", fmt.Errorf("%v is not a whole number of at least 1", v.Get("hooks::max_trials")))
	} else {
		c.Hooks.MaxTrials = n
	}
	return c, c.validate(bad)
}

func (c *Config) validate(bad func(string, error) error) error {
	if c.Server.URL == "" {
		return bad("server::url", errors.New("missing: set the update endpoint, e.g. https://d111.cloudfront.net/package"))
	}
	if err := checkURL(c.Server.URL); err != nil {
		return bad("server::url", err)
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

// readYAML merges the YAML file into v. It is read here, not by viper, to cap its size and
// so that viper's other formats are not linked into the binary (armv7 size budget).
func readYAML(v *viper.Viper, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return err
	}
	if len(raw) > maxConfigBytes {
		return fmt.Errorf("over the %d bytes a configuration may have; is it the right file?", maxConfigBytes)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("not valid YAML: %v", err)
	}
	return v.MergeConfigMap(m)
}

// maxConfigBytes caps the configuration file: a real one is a few KiB, and parsing a huge
// one costs minutes of CPU on a small device before it fails.
const maxConfigBytes = 1 << 20

// source names where a key's value came from, for its error: a flag, an OTA_AGENT_*
// variable, the file, or the built-in default.
func source(key, file string, over Overrides) string {
	dotted := strings.ReplaceAll(key, sep, ".")
	if _, ok := over[dotted]; ok {
		return "the command line (--" + strings.NewReplacer(".", "-", "_", "-").Replace(dotted) + ")"
	}
	env := "OTA_AGENT_" + strings.ToUpper(strings.ReplaceAll(key, sep, "_"))
	if _, ok := os.LookupEnv(env); ok {
		return "the environment (" + env + ")"
	}
	if file != "" {
		return file
	}
	return "the built-in defaults"
}

// byteRate parses a rate in bytes per second: 4MiB, 512KiB, 1000000.
func byteRate(raw string) (int64, error) {
	s := strings.TrimSpace(raw)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.n
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("%q is not a rate like 4MiB or 512KiB (bytes per second, above 0)", raw)
	}
	return n * mult, nil
}

func token(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

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

func unknownKey(keys []string) string {
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := defaults[k]; ok {
			continue
		}
		known := false
		for _, p := range mapKeys {
			if strings.HasPrefix(k, p+sep) {
				known = true
			}
		}
		if !known {
			return k
		}
	}
	return ""
}

func stringMap(raw any) (map[string]string, error) {
	out := map[string]string{}
	if raw == nil {
		return out, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a map of name: value, got %T", raw)
	}
	for k, v := range m {
		switch t := v.(type) {
		case string, bool, int, float64:
			out[k] = fmt.Sprint(t)
		default:
			return nil, fmt.Errorf("%s: want a plain value, got %T", k, v)
		}
	}
	return out, nil
}

func boolValue(raw any) (bool, error) {
	switch t := raw.(type) {
	case bool:
		return t, nil
	case string:
		switch strings.ToLower(t) {
		case "true", "yes", "1":
			return true, nil
		case "false", "no", "0", "":
			return false, nil
		}
	}
	return false, fmt.Errorf("%v is not true or false", raw)
}

func intValue(raw any) (int, error) {
	switch t := raw.(type) {
	case int:
		return t, nil
	case float64:
		return int(t), nil
	case string:
		var n int
		_, err := fmt.Sscan(t, &n)
		return n, err
	}
	return 0, fmt.Errorf("%v is not a number", raw)
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

// hosts are the endpoint's and the firmware CDNs' host:port, where redirects may lead.
func (c *Config) hosts() []string {
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
