//go:build !otatest

package config

// testEnv: a release build has no test hooks, so their variables are unknown like any other.
var testEnv []string
