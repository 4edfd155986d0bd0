package daemon

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestNextCheckAligned(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	interval := 6 * time.Hour
	base := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	slot := func(at time.Time) time.Duration { return time.Duration(at.UnixNano() % int64(interval)) }
	// Devices with the same request, checking at any moment, all land in one minute of the
	// interval, between half and one and a half intervals away.
	var first time.Duration
	for i := 0; i < 200; i++ {
		now := base.Add(time.Duration(rng.Int64N(int64(48 * time.Hour))))
		next := NextCheck(now, "same request", interval, 30*time.Minute, true, rng)
		if d := next.Sub(now); d < interval/2 || d > interval+interval/2+alignWindow {
			t.Fatalf("next check in %v", d)
		}
		s := slot(next)
		if i == 0 {
			first = s
		}
		if diff := (s - first + interval) % interval; diff > alignWindow && diff < interval-alignWindow {
			t.Fatalf("same request landed %v apart", diff)
		}
	}
	// Different requests spread over the interval.
	buckets := map[int]int{}
	for i := 0; i < 600; i++ {
		next := NextCheck(base, string(rune('a'+i%26))+string(rune(i)), interval, 0, true, rng)
		buckets[int(slot(next)/time.Hour)]++
	}
	for h := 0; h < 6; h++ {
		if buckets[h] < 50 {
			t.Fatalf("hour %d of the interval got %d of 600 keys: %v", h, buckets[h], buckets)
		}
	}
	// Without alignment: interval plus jitter.
	for i := 0; i < 50; i++ {
		if d := NextCheck(base, "k", interval, time.Minute, false, rng).Sub(base); d < interval || d >= interval+time.Minute {
			t.Fatalf("unaligned: %v", d)
		}
	}
}
