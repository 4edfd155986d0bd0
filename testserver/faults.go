package testserver

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ota-agent/ota-agent/testserver/reference"
)

// Faults are the knobs of a hostile network and a failing service. They apply to requests
// whose path starts with PathPrefix (all when empty), outside the edge: what the device sees.
type Faults struct {
	PathPrefix   string
	Latency      time.Duration // before the answer starts
	RateBPS      int64         // throughput cap of the body, bytes per second
	StallAfter   int64         // body bytes sent before the answer stops moving (0: off)
	CloseAfter   int64         // body bytes sent before the connection is cut (0: off)
	FlipAt       int64         // body offset whose byte is inverted (-1 or 0 with !Flip: off)
	Flip         bool
	IgnoreRange  bool    // drop Range/If-Range: always the whole object
	FailStatus   int     // 500, 503, 429 ... (0: off)
	FailFraction float64 // of matching requests, or
	FailCount    int     // the next N matching requests
	RetryAfter   string  // sent with FailStatus
	HTMLErrors   bool    // failures as an HTML page rather than JSON
	ExtraLength  int64   // declared Content-Length exceeds the body by this much
}

type faultBox struct {
	mu  sync.Mutex
	f   Faults
	rng *rand.Rand
}

func (b *faultBox) get() Faults {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.f
}

// shouldFail decides, and counts down FailCount.
func (b *faultBox) shouldFail() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.f.FailStatus == 0:
		return false
	case b.f.FailCount > 0:
		b.f.FailCount--
		return true
	case b.f.FailFraction > 0:
		return b.rng.Float64() < b.f.FailFraction
	}
	return false
}

// withFaults wraps next with the configured faults.
func (s *Server) withFaults(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f := s.faults.get()
		if f.PathPrefix != "" && !strings.HasPrefix(r.URL.Path, f.PathPrefix) {
			next(w, r)
			return
		}
		if f.Latency > 0 {
			select {
			case <-time.After(f.Latency):
			case <-r.Context().Done():
				return
			}
		}
		if s.faults.shouldFail() {
			s.stats.add(func(st *Stats) { st.FaultsInjected++ })
			failWith(w, f)
			return
		}
		if f.IgnoreRange {
			r.Header.Del("Range")
			r.Header.Del("If-Range")
		}
		if f.RateBPS == 0 && f.StallAfter == 0 && f.CloseAfter == 0 && !f.Flip && f.ExtraLength == 0 {
			next(w, r)
			return
		}
		next(&faultyWriter{ResponseWriter: w, f: f, r: r, start: time.Now()}, r)
	}
}

func failWith(w http.ResponseWriter, f Faults) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	msg := http.StatusText(f.FailStatus)
	if f.HTMLErrors {
		w.Header().Set("Content-Type", reference.HTMLType)
		w.WriteHeader(f.FailStatus)
		fmt.Fprintf(w, "<!doctype html>\n<html lang=en>\n<title>%d %s</title>\n<h1>%s</h1>\n", f.FailStatus, msg, msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.FailStatus)
	fmt.Fprintf(w, `{"error": %q}`, msg)
}

// faultyWriter applies the body faults as bytes go out.
type faultyWriter struct {
	http.ResponseWriter
	f     Faults
	r     *http.Request
	sent  int64
	start time.Time
	wrote bool
}

func (fw *faultyWriter) WriteHeader(code int) {
	if !fw.wrote && fw.f.ExtraLength > 0 {
		var n int64
		if _, err := fmt.Sscan(fw.Header().Get("Content-Length"), &n); err == nil {
			fw.Header().Set("Content-Length", itoa(n+fw.f.ExtraLength))
		}
	}
	fw.wrote = true
	fw.ResponseWriter.WriteHeader(code)
}

func (fw *faultyWriter) Write(p []byte) (int, error) {
	if !fw.wrote {
		fw.WriteHeader(200)
	}
	written := 0
	for len(p) > 0 {
		chunk := p
		if fw.f.RateBPS > 0 && len(chunk) > 16<<10 {
			chunk = chunk[:16<<10]
		}
		if lim := fw.f.StallAfter; lim > 0 && fw.sent+int64(len(chunk)) > lim {
			chunk = chunk[:max(lim-fw.sent, 0)]
		}
		if lim := fw.f.CloseAfter; lim > 0 && fw.sent+int64(len(chunk)) > lim {
			chunk = chunk[:max(lim-fw.sent, 0)]
		}
		if len(chunk) == 0 {
			if fw.f.StallAfter > 0 && fw.sent >= fw.f.StallAfter {
				if fl, ok := fw.ResponseWriter.(http.Flusher); ok {
					fl.Flush()
				}
				<-fw.r.Context().Done()
			}
			panic(http.ErrAbortHandler)
		}
		if fw.f.Flip && fw.f.FlipAt >= fw.sent && fw.f.FlipAt < fw.sent+int64(len(chunk)) {
			chunk = append([]byte(nil), chunk...)
			chunk[fw.f.FlipAt-fw.sent] ^= 0xff
		}
		n, err := fw.ResponseWriter.Write(chunk)
		fw.sent += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
		if fw.f.RateBPS > 0 {
			due := fw.start.Add(time.Duration(float64(fw.sent) / float64(fw.f.RateBPS) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-fw.r.Context().Done():
					return written, fw.r.Context().Err()
				}
			}
		}
	}
	return written, nil
}

func (fw *faultyWriter) Flush() {
	if fl, ok := fw.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}
