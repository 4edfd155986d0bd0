package update

import "errors"

// Error classes of a run beyond internal/fault's (the CLI maps them to exit codes).
var (
	// ErrRolledBack: the new generation failed its health check and was rolled back; the
	// release is refused (exit 1: the device runs what it ran before).
	ErrRolledBack = errors.New("the new generation was rolled back")
	// ErrInterrupted: a signal stopped the check (exit 1); nothing half-made is active.
	ErrInterrupted = errors.New("interrupted")
)

func orNothing(s string) string {
	if s == "" {
		return "none (first install)"
	}
	return s
}
