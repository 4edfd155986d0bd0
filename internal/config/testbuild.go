//go:build otatest

package config

// testEnv are the variables of the agent's test hooks (agent/testbuild.go), not
// configuration keys: a build with -tags otatest does not warn about them.
var testEnv = []string{"OTA_AGENT_TEST_NOW", "OTA_AGENT_TEST_CRASH_AFTER"}
