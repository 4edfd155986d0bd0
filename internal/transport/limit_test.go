package transport

import (
	"context"
	"math"
	"testing"
	"time"
)

// Reading through the limiter takes the cap's time (on an injected clock), all readers
// together, and a rate of 0 never waits.
func TestLimiterCapsTheRate(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var slept time.Duration
	l := NewLimiter(func(time.Time) int64 { return 256 << 10 })
	l.now = func() time.Time { return now }
	l.sleep = func(_ context.Context, d time.Duration) error { slept += d; now = now.Add(d); return nil }
	total := 0
	for total < 4<<20 { // 4 MiB in 32 KiB reads: 16 s at 256 KiB/s
		l.Wait(context.Background(), 32<<10)
		total += 32 << 10
	}
	want := 16*time.Second - time.Second/8 // the first eighth of a second is the burst
	if math.Abs(float64(slept-want)) > float64(50*time.Millisecond) {
		t.Fatalf("slept %v for 4 MiB at 256 KiB/s, want %v", slept, want)
	}
	l.Rate = func(time.Time) int64 { return 0 }
	if d, _ := l.Wait(context.Background(), 1<<30); d != 0 {
		t.Fatalf("no cap waited %v", d)
	}
}
