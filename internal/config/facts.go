package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// kernelArch maps `uname -m` to the catalog's cpuArch names.
var kernelArch = map[string]string{
	"aarch64": "armv8", "arm64": "armv8", "armv8l": "armv8",
	"armv7l": "armv7", "armv7": "armv7",
	"armv6l": "armv6", "x86_64": "x86_64", "i686": "x86",
}

// CPUArch resolves device.cpu_arch ("auto" reads the kernel).
func (c *Config) CPUArch() (string, error) {
	if c.Device.CPUArch != "auto" {
		return c.Device.CPUArch, nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("device.cpu_arch auto: uname: %w", err)
	}
	m := unix.ByteSliceToString(u.Machine[:])
	if a, ok := kernelArch[m]; ok {
		return a, nil
	}
	return strings.ToLower(m), nil
}

// MachineIDFile is where device.id comes from when it is not set.
const MachineIDFile = "/etc/machine-id"

// DeviceID is who the device is to phased rollouts: device.id, else /etc/machine-id (under the
// sysroot: an image's own, which its first boot may replace). "" with the reason when neither
// says (the device then takes its turn last).
func (c *Config) DeviceID() (string, error) {
	if id := strings.TrimSpace(c.Device.ID); id != "" {
		return id, nil
	}
	raw, err := os.ReadFile(c.Path(MachineIDFile))
	if err != nil {
		return "", fmt.Errorf("device.id is not set and %w", err)
	}
	id := strings.TrimSpace(string(raw))
	if id == "" || id == "uninitialized" {
		return "", fmt.Errorf("device.id is not set and %s is empty or uninitialized", c.Path(MachineIDFile))
	}
	return id, nil
}

// DeviceFacts gathers cpuarch, os, every configured attribute whose probe (if any) matches
// under the sysroot, and every pin. Keys and values are lower-case.
func (c *Config) DeviceFacts() (map[string]string, error) {
	arch, err := c.CPUArch()
	if err != nil {
		return nil, err
	}
	f := map[string]string{"cpuarch": strings.ToLower(arch), "os": strings.ToLower(c.Device.OS)}
	names := map[string]bool{}
	for n := range c.Device.Attributes {
		names[n] = true
	}
	for n := range c.Device.Probes {
		names[n] = true
	}
	for n := range names {
		if glob, ok := c.Device.Probes[n]; ok {
			m, err := filepath.Glob(c.Path(glob))
			if err != nil {
				return nil, fmt.Errorf("%w: device.probes.%s: %v", ErrConfig, n, err)
			}
			if len(m) == 0 {
				continue
			}
		}
		ch := c.Device.Attributes[n]
		if ch == "" {
			ch = c.Device.OS
		}
		f["attr"+strings.ToLower(n)] = strings.ToLower(ch)
	}
	for app, ch := range c.Device.Pins {
		f[strings.ToLower(app)] = strings.ToLower(ch)
	}
	return f, nil
}
