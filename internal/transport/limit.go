package transport

import (
	"context"
	"sync"
	"time"
)

// Limiter caps the bytes per second of every body read through a client, all transfers
// together (a token bucket). Rate gives the cap at a moment (0: none), so a schedule can
// change it through the day. Time spent waiting for the cap never counts as a stall.
type Limiter struct {
	Rate func(time.Time) int64
	// now and sleep are the clock (tests replace them).
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewLimiter caps at rate(now) bytes per second.
func NewLimiter(rate func(time.Time) int64) *Limiter {
	return &Limiter{Rate: rate, now: time.Now, sleep: sleepCtx}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait takes n bytes from the bucket, sleeping while it is in debt; it returns how long it
// slept.
func (l *Limiter) Wait(ctx context.Context, n int) (time.Duration, error) {
	if l == nil || n <= 0 {
		return 0, nil
	}
	now := l.now()
	rate := l.Rate(now)
	if rate <= 0 {
		return 0, nil
	}
	l.mu.Lock()
	burst := float64(max(rate/8, 4<<10)) // an eighth of a second, never less than 4 KiB
	if !l.last.IsZero() {
		l.tokens += now.Sub(l.last).Seconds() * float64(rate)
	} else {
		l.tokens = burst
	}
	l.tokens = min(l.tokens, burst) - float64(n)
	l.last = now
	debt := l.tokens
	l.mu.Unlock()
	if debt >= 0 {
		return 0, nil
	}
	d := time.Duration(-debt / float64(rate) * float64(time.Second))
	return d, l.sleep(ctx, d)
}

// minRate is the slowest a body may average under the cap before it counts as stalled:
// floor, or half the cap when that is lower.
func (l *Limiter) minRate(now time.Time, floor int64) int64 {
	if l == nil {
		return floor
	}
	if r := l.Rate(now); r > 0 {
		return min(floor, r/2)
	}
	return floor
}
