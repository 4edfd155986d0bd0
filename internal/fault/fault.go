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

// Class names err's class for reports: config, unavailable, rejected, or failed (anything
// else); "" for nil.
func Class(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrConfig):
		return "config"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrRejected):
		return "rejected"
	}
	return "failed"
}
