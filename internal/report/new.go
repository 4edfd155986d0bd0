package report

import (
	"log/slog"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/transport"
)

// New is report.url's reporter (nil without one): its own client, with report.*'s TLS
// options and the server's timeouts and proxy.
func New(cfg *config.Config, log *slog.Logger, now func() time.Time, agent string, loopbackHTTP bool) (*Reporter, error) {
	r := cfg.Report
	if r.URL == "" {
		return nil, nil
	}
	c, err := transport.NewHTTPClient(transport.ClientOptions{CAFile: cfg.Named(r.CAFile), Pins: r.PinSHA256, ClientCert: cfg.Named(r.ClientCert),
		ClientKey: cfg.Named(r.ClientKey), Proxy: cfg.Server.Proxy, HeaderTimeout: cfg.Server.Timeout, StallTimeout: cfg.Server.StallTimeout,
		Now: now, UserAgent: agent, LoopbackHTTP: loopbackHTTP})
	machineID := ""
	if cfg.Device.ID == "" {
		machineID, _ = cfg.DeviceID()
	}
	return &Reporter{URL: r.URL, TokenFile: cfg.Named(r.TokenFile), HTTP: c, Device: Device(cfg.Device.ID, machineID),
		Agent: agent, MaxEvents: r.MaxEvents, Log: log, Now: now}, err
}
