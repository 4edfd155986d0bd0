package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/protocol"
)

func TestBackoff(t *testing.T) {
	base, interval := 30*time.Second, 6*time.Hour
	for n := 1; n <= 20; n++ {
		d := backoff(n, base, interval, errors.New("x"))
		lo := min(base<<min(n-1, 16), time.Hour) / 2
		if d < lo || d > 2*lo {
			t.Fatalf("failure %d: %v outside [%v, %v]", n, d, lo, 2*lo)
		}
	}
	// Retry-After is honoured up to the cap.
	if d := backoff(1, base, interval, &protocol.RetryError{Err: fault.ErrUnavailable, After: 10 * time.Minute}); d != 10*time.Minute {
		t.Fatalf("Retry-After 10m: %v", d)
	}
	if d := backoff(1, base, interval, &protocol.RetryError{Err: fault.ErrUnavailable, After: 100 * time.Hour}); d != time.Hour {
		t.Fatalf("Retry-After 100h not capped: %v", d)
	}
}
