package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// sep is viper's key delimiter: bucket names and attribute names may contain dots.
const sep = "::"

// Overrides are command-line values that win over the file and the environment.
type Overrides map[string]string

// KeyDoc is one configuration key as Config declares it.
type KeyDoc struct {
	Key     string // dotted: server.stall_timeout
	Default string // the `default` tag ("" when none)
	Map     bool   // any sub-key is accepted (server.firmware.<bucket>)
	List    bool   // a list of strings
	field   []int
}

// Keys lists every key of Config in declaration order.
func Keys() []KeyDoc { return keysOf(reflect.TypeOf(Config{}), "", nil) }

func keysOf(t reflect.Type, prefix string, index []int) []KeyDoc {
	var out []KeyDoc
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("key")
		if name == "" || name == "-" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			out = append(out, keysOf(f.Type, prefix+name+".", idx)...)
			continue
		}
		out = append(out, KeyDoc{Key: prefix + name, Default: f.Tag.Get("default"), Map: f.Type.Kind() == reflect.Map, List: f.Type.Kind() == reflect.Slice, field: idx})
	}
	return out
}

// Load reads file (DefaultConfigFile under root when empty), then OTA_AGENT_* variables
// (OTA_AGENT_SERVER_URL, OTA_AGENT_DEVICE_OS, ...), then overrides, into Config in one pass
// over its keys. Every error names the key and where its value came from.
func Load(file, root string, over Overrides) (*Config, error) {
	v := viper.NewWithOptions(viper.KeyDelimiter(sep), viper.EnvKeyReplacer(strings.NewReplacer(sep, "_")))
	v.SetEnvPrefix("OTA_AGENT")
	v.AutomaticEnv()
	keys := Keys()
	for _, k := range keys {
		if !k.Map {
			v.SetDefault(strings.ReplaceAll(k.Key, ".", sep), k.Default)
		}
	}
	explicit := file != ""
	if !explicit {
		file = InRoot(root, DefaultConfigFile)
	}
	looked := ""
	if err := readYAML(v, file); err != nil {
		if explicit || !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: read %s: %v", ErrConfig, file, err)
		}
		looked, file = file, ""
	}
	for k, val := range over {
		v.Set(strings.ReplaceAll(k, ".", sep), val)
	}
	bad := func(key string, err error) error {
		return fmt.Errorf("%w: %s in %s: %v", ErrConfig, strings.ReplaceAll(key, sep, "."), source(key, file, looked, over), err)
	}
	if k := unknownKey(v.AllKeys(), keys); k != "" {
		return nil, bad(k, errors.New("unknown key (see dist/config.yaml for every key)"))
	}
	c := &Config{File: file, Root: root, Looked: looked, Warnings: unknownEnv(os.Environ(), keys)}
	cv := reflect.ValueOf(c).Elem()
	for _, k := range keys {
		key := strings.ReplaceAll(k.Key, ".", sep)
		if err := decode(cv.FieldByIndex(k.field), v.Get(key)); err != nil {
			return nil, bad(key, err)
		}
	}
	return c, c.validate(bad)
}

// decode sets one field from viper's value (a YAML value, or a string from the
// environment or a flag).
func decode(f reflect.Value, raw any) error {
	switch f.Interface().(type) {
	case string:
		f.SetString(strings.TrimSpace(fmt.Sprint(orEmpty(raw))))
	case []string:
		l, err := list(raw)
		f.Set(reflect.ValueOf(l))
		return err
	case map[string]string:
		m, err := stringMap(raw)
		f.Set(reflect.ValueOf(m))
		return err
	case map[string]AppConfig:
		m, err := appConfigs(raw)
		f.Set(reflect.ValueOf(m))
		return err
	case time.Duration:
		s := fmt.Sprint(orEmpty(raw))
		d, err := time.ParseDuration(s)
		if err != nil && durationShape.MatchString(s) {
			return fmt.Errorf("%q is too large (at most 2562047h)", s)
		}
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration like 30s, 5m or 6h", s)
		}
		f.SetInt(int64(d))
	case bool:
		b, err := boolValue(raw)
		f.SetBool(b)
		return err
	case int:
		n, err := intValue(raw)
		if err != nil {
			return err
		}
		f.SetInt(int64(n))
	case ByteRate:
		n, err := byteRate(fmt.Sprint(orEmpty(raw)), true)
		f.SetInt(n)
		return err
	default:
		return fmt.Errorf("no decoder for %s", f.Type())
	}
	return nil
}

// durationShape is what time.ParseDuration takes; one that still fails has overflowed.
var durationShape = regexp.MustCompile(`^([0-9]*\.?[0-9]+(ns|us|µs|ms|s|m|h))+$`)

func orEmpty(raw any) any {
	if raw == nil {
		return ""
	}
	return raw
}

func list(raw any) ([]string, error) {
	switch t := raw.(type) {
	case nil:
		return []string{}, nil
	case string:
		return strings.Fields(t), nil
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			out = append(out, fmt.Sprint(x))
		}
		return out, nil
	case []string:
		return t, nil
	}
	return nil, fmt.Errorf("want a list, got %T", raw)
}

func unknownKey(all []string, keys []KeyDoc) string {
	sort.Strings(all)
	for _, k := range all {
		dotted := strings.ReplaceAll(k, sep, ".")
		known := false
		for _, d := range keys {
			if dotted == d.Key || d.Map && strings.HasPrefix(dotted, d.Key+".") {
				known = true
				break
			}
		}
		if !known {
			return k
		}
	}
	return ""
}

// readYAML merges the YAML file into v. It is read here, not by viper, to cap its size and
// so that viper's other formats are not linked into the binary (armv7 size budget).
func readYAML(v *viper.Viper, file string) error {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; what is not a regular file is
	// refused before a byte is read.
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s): name the configuration file itself", fi.Mode().Type())
	}
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
// variable, the file, or the built-in default (saying which file was looked for).
func source(key, file, looked string, over Overrides) string {
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
	if looked != "" {
		return "the built-in defaults (no configuration file: looked for " + looked + "; --config FILE names one)"
	}
	return "the built-in defaults"
}

// unknownEnv lists the OTA_AGENT_* variables that name no key (a typo there would be
// silently ignored), as warnings.
func unknownEnv(environ []string, keys []KeyDoc) []string {
	known := map[string]bool{}
	for _, k := range keys {
		known["OTA_AGENT_"+strings.ToUpper(strings.ReplaceAll(k.Key, ".", "_"))] = true
	}
	for _, name := range testEnv {
		known[name] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "OTA_AGENT_") || known[name] {
			continue
		}
		mapped := false
		for _, k := range keys { // OTA_AGENT_SERVER_FIRMWARE_<BUCKET>, ...
			if k.Map && strings.HasPrefix(name, "OTA_AGENT_"+strings.ToUpper(strings.ReplaceAll(k.Key, ".", "_"))+"_") {
				mapped = true
			}
		}
		if !mapped {
			out = append(out, fmt.Sprintf("the environment variable %s names no configuration key: ignored (dist/config.yaml lists every key; OTA_AGENT_SERVER_URL is server.url)", name))
		}
	}
	sort.Strings(out)
	return out
}

// byteRate parses a rate in bytes per second: 4MiB, 512KiB, 1000000.
func byteRate(raw string, zeroOK bool) (int64, error) {
	s := strings.TrimSuffix(strings.TrimSpace(raw), "/s")
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
	n, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) || err == nil && n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large (at most 8 EiB)", raw)
	}
	if err != nil || n < 0 || n == 0 && !zeroOK {
		return 0, fmt.Errorf("%q is not a size or rate like 4MiB or 512KiB/s", raw)
	}
	return n * mult, nil
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

// appConfigs reads apps: {<name>: {units: [...]}}.
func appConfigs(raw any) (map[string]AppConfig, error) {
	out := map[string]AppConfig{}
	if raw == nil {
		return out, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a map of app name: {units: [...]}, got %T", raw)
	}
	for app, v := range m {
		sub, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want {units: [...]}, got %T", app, v)
		}
		var c AppConfig
		for k, x := range sub {
			if k != "units" {
				return nil, fmt.Errorf("%s.%s: unknown key (an app has units)", app, k)
			}
			l, err := list(x)
			if err != nil {
				return nil, fmt.Errorf("%s.units: %v", app, err)
			}
			c.Units = l
		}
		out[app] = c
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
		if t > math.MaxInt32 || t < math.MinInt32 {
			return 0, fmt.Errorf("%d is too large", t)
		}
		return t, nil
	case float64: // YAML: a number too large for an integer, or with a fraction
		if t != math.Trunc(t) {
			return 0, fmt.Errorf("%v is not a whole number", t)
		}
		return 0, fmt.Errorf("%v is too large", t)
	case uint64:
		return 0, fmt.Errorf("%d is too large", t)
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 32)
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%s is too large", t)
		}
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", t)
		}
		return int(n), nil
	}
	return 0, fmt.Errorf("%v is not a whole number", raw)
}
