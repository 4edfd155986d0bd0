package agent

import (
	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/fault"
)

// The configuration lives in internal/config; these are its names for cmd/ and the tests.
type (
	// Config is the agent's configuration (internal/config).
	Config = config.Config
	// Overrides are command-line values that win over the file and the environment.
	Overrides = config.Overrides
	// KeyDoc is one configuration key as Config declares it.
	KeyDoc = config.KeyDoc
)

// DefaultConfigFile is where a device keeps its configuration.
const DefaultConfigFile = config.DefaultConfigFile

// ErrConfig marks a configuration or usage error (exit 2).
var ErrConfig = fault.ErrConfig

// LoadConfig reads the configuration (config.Load).
func LoadConfig(file, root string, over Overrides) (*Config, error) {
	return config.Load(file, root, over)
}

// ConfigKeys lists every key of Config in declaration order.
func ConfigKeys() []KeyDoc { return config.Keys() }

// InRoot maps a path of the target system into the sysroot: it never leaves root.
func InRoot(root, p string) string { return config.InRoot(root, p) }
