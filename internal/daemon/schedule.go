package daemon

import (
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// alignWindow is how far apart devices of one slot check: well inside the edge's 100 s TTL.
const alignWindow = 60 * time.Second

// NextCheck is when the daemon checks next after a successful check at now.
//
// Without align: interval plus a random part of jitter (devices that booted together drift
// apart). With align: every device that would send the same request (same facts, same
// installed set: key) checks in the same minute of the interval, chosen by hashing the key,
// so all but the first of them are answered from the edge's cache; different requests are
// spread evenly over the interval. The next check is between half and one and a half
// intervals away.
func NextCheck(now time.Time, key string, interval, jitter time.Duration, align bool, rng *rand.Rand) time.Time {
	if !align || interval < 4*alignWindow {
		var j time.Duration
		if jitter > 0 {
			j = time.Duration(rng.Int64N(int64(jitter)))
		}
		return now.Add(interval + j)
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	offset := time.Duration(h.Sum64() % uint64(interval))
	phase := time.Duration(now.UnixNano() % int64(interval))
	delta := (offset - phase + interval) % interval
	if delta < interval/2 {
		delta += interval
	}
	return now.Add(delta + time.Duration(rng.Int64N(int64(alignWindow))))
}
