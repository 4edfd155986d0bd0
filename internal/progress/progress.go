// Package progress is the line a person reads while a binary arrives: bytes, percent, rate
// and time left, at most once a second.
package progress

import (
	"fmt"
	"io"
	"time"

	"github.com/ota-agent/ota-agent/internal/protocol"
)

// Reader reports how far a transfer of total bytes has come, starting at from (a resume),
// at most once a second and first after a second (a rate over a few milliseconds means
// nothing).
type Reader struct {
	r           io.Reader
	label       string
	from, n     int64
	total       int64
	start, last time.Time
	report      func(string)
}

// NewReader reads r, reporting label's progress lines to report.
func NewReader(r io.Reader, label string, from, total int64, report func(string)) *Reader {
	now := time.Now()
	return &Reader{r: r, label: label, from: from, n: from, total: total, start: now, last: now, report: report}
}

func (p *Reader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); p.total > 0 && now.Sub(p.last) >= time.Second {
		p.last = now
		p.report(Text(p.label, p.n, p.total, float64(p.n-p.from)/now.Sub(p.start).Seconds()))
	}
	return n, err
}

// Text is one download's progress line: bytes, percent, rate and time left.
func Text(label string, n, total int64, rate float64) string {
	s := fmt.Sprintf("downloading %s: %s of %s (%d%%)", label, protocol.HumanBytes(n), protocol.HumanBytes(total), 100*n/max(total, 1))
	if rate > 0 {
		left := time.Duration(float64(total-n) / rate * float64(time.Second)).Round(time.Second)
		s += fmt.Sprintf(", %s/s, %s left", protocol.HumanBytes(int64(rate)), left)
	}
	return s
}
