package agent

import "github.com/ota-agent/ota-agent/internal/protocol"

// deviceFacts are the facts the configuration and the device's probes give.
func (a *Agent) deviceFacts() (protocol.Facts, error) {
	f, err := a.cfg.DeviceFacts()
	return protocol.Facts(f), err
}
