// Package fault holds the error classes every layer wraps its errors in; the CLI maps them
// to exit codes (README, "Exit codes").
package fault

import "errors"

var (
	// ErrConfig: a configuration or usage error (exit 2).
	ErrConfig = errors.New("configuration error")
	// ErrUnavailable: the server or the network could not be used; try later (exit 3).
	ErrUnavailable = errors.New("server or network unavailable")
	// ErrRejected: what the server sent failed verification and was not installed (exit 4).
	ErrRejected = errors.New("update rejected")
)
