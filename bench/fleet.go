package main

import (
	"container/heap"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

// device is one simulated gateway: its facts and what it has installed.
type device struct {
	facts     agent.Facts
	installed map[string]string // app → md5
	next      time.Time
}

// dueAt is when the device checks next (the simulations' heap order).
func (d *device) dueAt() time.Time { return d.next }

// dueQueue is a heap of simulated devices, the next one due first.
type dueQueue[T interface{ dueAt() time.Time }] []T

type queue = dueQueue[*device]

func (q dueQueue[T]) Len() int           { return len(q) }
func (q dueQueue[T]) Less(i, j int) bool { return q[i].dueAt().Before(q[j].dueAt()) }
func (q dueQueue[T]) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *dueQueue[T]) Push(x any)        { *q = append(*q, x.(T)) }
func (q *dueQueue[T]) Pop() any          { old := *q; d := old[len(old)-1]; *q = old[:len(old)-1]; return d }
func (c *simClock) now() time.Time       { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *simClock) set(t time.Time)      { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type simClock struct {
	mu sync.Mutex
	t  time.Time
}

// fleet: 10,000 devices poll the real edge code for a simulated day with a roll-out at noon,
// once with the agent's canonical requests and once as naive clients (facts in random order
// and case-preserving, ETags unsorted).
func (b *bench) fleet() {
	n := 10000
	if b.quick {
		n = 1000
	}
	for _, interval := range []time.Duration{6 * time.Hour, 15 * time.Minute} {
		a, reqs := b.simulate(n, interval, clientAgent)
		plain, _ := b.simulate(n, interval, clientUnaligned)
		nv, _ := b.simulate(n, interval, clientNaive)
		hit := func(s testserver.Stats) float64 { return float64(s.EdgeHits) / float64(s.EdgeHits+s.EdgeMisses) }
		b.add(row{fmt.Sprintf("fleet: %d devices, poll every %v, one day, roll-out at noon (%d requests): edge hit ratio", n, interval, reqs),
			fmt.Sprintf("%.2f%% (origin: %d requests, %s)", 100*hit(a), a.OriginRequests, mib(a.OriginBytes)),
			fmt.Sprintf("naive client (random order, ± 30m jitter): %.2f%% (origin: %d requests, %s); agent with poll.align off: %.2f%% (%d)",
				100*hit(nv), nv.OriginRequests, mib(nv.OriginBytes), 100*hit(plain), plain.OriginRequests),
			fmt.Sprintf("%.0f× fewer origin requests", float64(nv.OriginRequests)/float64(max(a.OriginRequests, 1))), "≥ 99% for the agent", verdict(hit(a) >= 0.99)})
	}
}

// How a simulated device asks and schedules.
const (
	clientAgent     = iota // canonical request, poll.align (the default)
	clientUnaligned        // canonical request, interval + jitter
	clientNaive            // facts in random order and case, unsorted ETags, interval + jitter
)

func (b *bench) simulate(n int, interval time.Duration, client int) (testserver.Stats, int64) {
	canonical := client != clientNaive
	dir, cat, srv := b.sampleServer("fleet")
	defer srv.Close()
	clk := &simClock{t: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}
	srv.SetClock(clk.now)
	h := srv.Handler()
	rng := rand.New(rand.NewPCG(7, 7))
	start := clk.now()
	q := newFleet(n, interval, start, clk, h, rng)
	// A fleet in steady state: the agent's devices already check in their aligned minute.
	if client == clientAgent {
		for _, d := range *q {
			d.next = agent.NextCheck(start.Add(-time.Duration(rng.Int64N(int64(interval)))), d.key(), interval, 30*time.Minute, true, rng)
			for d.next.Before(start) {
				d.next = d.next.Add(interval)
			}
		}
		heap.Init(q)
	}
	before := srv.Stats()
	end := start.Add(24 * time.Hour)
	rolled := false
	var reqs int64
	for q.Len() > 0 {
		d := heap.Pop(q).(*device)
		if d.next.After(end) {
			continue
		}
		if !rolled && d.next.After(start.Add(12*time.Hour)) {
			rolled = true
			r := cat.Rows[5] // scoreboard prod
			r.Version, r.File = "1.1.0", "blobs/scoreboard_1.1.0"
			os.WriteFile(filepath.Join(dir, r.File), []byte(strings.Repeat("new scoreboard ", 70)), 0o644)
			must(srv.SetRow(r))
		}
		clk.set(d.next)
		reqs++
		key := d.poll(h, canonical, rng)
		d.next = agent.NextCheck(d.next, key, interval, 30*time.Minute, client == clientAgent, rng)
		heap.Push(q, d)
	}
	after := srv.Stats()
	after.EdgeHits -= before.EdgeHits
	after.EdgeMisses -= before.EdgeMisses
	after.OriginRequests -= before.OriginRequests
	after.OriginBytes -= before.OriginBytes
	return after, reqs
}

// newFleet makes n devices with random facts, each first due at a random moment of the
// interval, and plays the day before: 85% current, 10% one app behind, 5% fresh out of
// the factory.
func newFleet(n int, interval time.Duration, start time.Time, clk *simClock, h http.Handler, rng *rand.Rand) *queue {
	q := &queue{}
	for i := 0; i < n; i++ {
		d := &device{facts: agent.Facts{}, installed: map[string]string{}}
		d.facts["cpuarch"] = pick(rng, 0.7, "armv8", "armv7")
		ch := pick(rng, 0.9, "prod", "beta")
		d.facts["os"] = ch
		for attr, p := range map[string]float64{"gamer": 0.4, "camera": 0.3, "cellular": 0.5} {
			if rng.Float64() < p {
				d.facts["attr"+attr] = ch
			}
		}
		d.next = start.Add(time.Duration(rng.Int64N(int64(interval))))
		heap.Push(q, d)
	}
	clk.set(start.Add(-24 * time.Hour))
	for _, d := range *q {
		switch r := rng.Float64(); {
		case r < 0.95:
			d.poll(h, true, rng)
			if r >= 0.85 {
				for app := range d.installed {
					d.installed[app] = "0123456789abcdef0123456789abcdef" // an older build
					break
				}
			}
		}
	}
	return q
}

func pick(rng *rand.Rand, p float64, a, b string) string {
	if rng.Float64() < p {
		return a
	}
	return b
}

// poll sends one check through the edge and installs what comes back (bookkeeping only); it
// returns the cache key of the device's next request.
func (d *device) poll(h http.Handler, canonical bool, rng *rand.Rand) string {
	var md5s []string
	for _, m := range d.installed {
		md5s = append(md5s, m)
	}
	var query, inm string
	if canonical {
		query, inm = d.facts.Query("fullpayload"), packaging.SortedMD5s(md5s)
	} else {
		// The same facts as a hand-written client sends them: documented case, any order.
		names := map[string]string{"cpuarch": "cpuArch", "os": "os", "attrgamer": "attrGamer", "attrcamera": "attrCamera", "attrcellular": "attrCellular"}
		var parts []string
		for k, v := range d.facts {
			parts = append(parts, names[k]+"="+v)
		}
		rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		rng.Shuffle(len(md5s), func(i, j int) { md5s[i], md5s[j] = md5s[j], md5s[i] })
		query, inm = strings.Join(parts, "&"), strings.Join(md5s, ",")
	}
	req := httptest.NewRequest("GET", "/package?"+query, nil)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		return d.key()
	}
	pr, err := packaging.NewPayloadReader(rec.Body, packaging.DefaultLimits)
	if err != nil {
		return d.key()
	}
	for {
		_, _, body, err := pr.Next()
		if err != nil {
			break
		}
		io.Copy(io.Discard, body)
	}
	if det := pr.Details(); det != nil {
		next := map[string]string{}
		for _, app := range det.Apps {
			next[app] = det.Entries[app].MD5
		}
		d.installed = next
	}
	return d.key()
}

// key is what the agent's RequestKey would be for this device.
func (d *device) key() string {
	var md5s []string
	for _, m := range d.installed {
		md5s = append(md5s, m)
	}
	return d.facts.Query("fullpayload") + "\x00" + packaging.SortedMD5s(md5s)
}

// sampleServer is the sample catalog (1 KiB binaries) in b.dir/name behind a test server.
func (b *bench) sampleServer(name string) (string, *testserver.Catalog, *testserver.Server) {
	dir := filepath.Join(b.dir, name)
	os.RemoveAll(dir)
	_, err := testserver.WriteSample(dir, 1024, 3, nil)
	must(err)
	cat, err := testserver.LoadCatalog(dir)
	must(err)
	srv, err := testserver.New(cat, testserver.Options{SpoolDir: filepath.Join(b.dir, name+"-spool")})
	must(err)
	return dir, cat, srv
}
