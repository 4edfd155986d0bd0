//go:build !otatest

package agent

// A release build: no crash points, no plain http to loopback (see testbuild.go).
func (a *Agent) testHooks() {}

// testEnv: a release build has no test hooks, so their variables are unknown like any other.
var testEnv []string
