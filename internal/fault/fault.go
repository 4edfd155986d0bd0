// Package fault holds the error classes every layer wraps its errors in; the CLI maps them
// to exit codes (README, "Exit codes").
package fault

import "errors"

var (
	// Config: a configuration or usage error (exit 2).
	Config = errors.New("configuration error")
	// Unavailable: the server or the network could not be used; try later (exit 3).
	Unavailable = errors.New("server or network unavailable")
	// Rejected: what the server sent failed verification and was not installed (exit 4).
	Rejected = errors.New("update rejected")
)
