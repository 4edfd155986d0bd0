//go:build !otatest

package agent

// A release build: no crash points, no plain http to loopback (see testbuild.go).
func (a *Agent) testHooks() {}

// testBuild: a release build never follows plain http where https is required.
const testBuild = false
