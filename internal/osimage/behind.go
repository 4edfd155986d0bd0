package osimage

import (
	"sync"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/packaging"
)

// behind hashes the partition from the medium behind the writer: told each offset the
// writer has flushed (a checkpoint), it reads and hashes up to there on its own goroutine,
// so the read-back overlaps the download instead of following it. It never reads a byte the
// writer has not flushed, so what it hashes is what the medium holds.
type behind struct {
	h    *installer.Hasher
	mu   sync.Mutex
	to   int64 // flushed: hash up to here
	stop bool
	wake chan struct{} // one pending signal
	done chan struct{}
	err  error
	once sync.Once // ended: by finish or abort
}

func startBehind(p *installer.Partitions, slot string, withMD5 bool) (*behind, error) {
	h, err := p.OpenHasher(slot, withMD5)
	if err != nil {
		return nil, err
	}
	b := &behind{h: h, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.run()
	return b, nil
}

func (b *behind) run() {
	defer close(b.done)
	for range b.wake {
		b.mu.Lock()
		to, stop := b.to, b.stop
		b.mu.Unlock()
		if stop {
			return
		}
		if err := b.h.HashTo(to, false); err != nil {
			b.err = err
			return
		}
	}
}

// flushed says the partition holds every byte before n.
func (b *behind) flushed(n int64) {
	b.mu.Lock()
	b.to = max(b.to, n)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // a signal is pending: it reads the newest offset
	}
}

// finish hashes what is left up to size (every byte flushed) and returns the digests.
func (b *behind) finish(size int64) (packaging.Digests, error) {
	b.once.Do(func() { close(b.wake) })
	<-b.done
	err := b.err
	if err == nil {
		err = b.h.HashTo(size, true)
	}
	return b.h.Close(), err
}

// abort stops it (after the range it is reading); after finish, nothing.
func (b *behind) abort() {
	b.mu.Lock()
	b.stop = true
	b.mu.Unlock()
	b.once.Do(func() {
		close(b.wake)
		<-b.done
		b.h.Close()
	})
}
