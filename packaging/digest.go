// Package packaging holds the wire formats shared by the agent and the testserver: the
// gzip'd tar payload, the package_details JSON, signed release statements and the digest seam.
package packaging

import (
	"crypto/md5"
	"encoding/hex"
	"hash"
	"io"
	"os"
	"runtime"
)

// Digests are the hashes the protocol uses to name and check a binary.
type Digests struct {
	MD5    string // lower-case hex
	SHA256 string // lower-case hex
	Size   int64
}

// Digester computes MD5 and SHA-256 of everything written to it in one pass. It is the only
// place the project hashes binaries, so the SHA-256 implementation is chosen here (see
// sha256_*.go and BenchmarkSHA256).
type Digester struct {
	md5 hash.Hash
	sha hash.Hash
	n   int64
	// With more than one CPU, MD5 runs on a second goroutine over batches of 256 KiB
	// copies, so the two hashes (MD5 is the slower) overlap with each other and with I/O.
	batch []byte
	work  chan []byte
	free  chan []byte
	done  chan struct{}
}

const batchSize = 256 << 10

// NewDigester returns an empty Digester.
func NewDigester() *Digester { return NewDigesterFor(true) }

// NewDigesterFor returns an empty Digester; without withMD5 its Digests leave MD5 empty. The
// agent hashes SHA-256 only when a signed statement must vouch for the bytes: the statement
// binds the MD5 to the SHA-256 it checks, and MD5 is the slower half of the work.
func NewDigesterFor(withMD5 bool) *Digester {
	d := &Digester{sha: newSHA256()}
	if !withMD5 {
		return d
	}
	d.md5 = md5.New()
	if runtime.GOMAXPROCS(0) > 1 {
		d.work, d.free, d.done = make(chan []byte, 2), make(chan []byte, 3), make(chan struct{})
		for i := 0; i < 3; i++ {
			d.free <- make([]byte, 0, batchSize)
		}
		d.batch = <-d.free
		go func() {
			for b := range d.work {
				d.md5.Write(b)
				d.free <- b[:0]
			}
			close(d.done)
		}()
	}
	return d
}

// Write hashes p; it never fails.
func (d *Digester) Write(p []byte) (int, error) {
	d.sha.Write(p)
	d.n += int64(len(p))
	if d.md5 == nil {
		return len(p), nil
	}
	if d.work == nil {
		d.md5.Write(p)
		return len(p), nil
	}
	for rest := p; len(rest) > 0; {
		n := copy(d.batch[len(d.batch):cap(d.batch)], rest)
		d.batch, rest = d.batch[:len(d.batch)+n], rest[n:]
		if len(d.batch) == cap(d.batch) {
			d.work <- d.batch
			d.batch = <-d.free
		}
	}
	return len(p), nil
}

// Len is how many bytes were written.
func (d *Digester) Len() int64 { return d.n }

// Sum returns the digests of everything written; the Digester takes no more writes after.
func (d *Digester) Sum() Digests {
	if d.work != nil {
		if len(d.batch) > 0 {
			d.work <- d.batch
		}
		close(d.work)
		<-d.done
		d.work = nil
	}
	sum := Digests{SHA256: hex.EncodeToString(d.sha.Sum(nil)), Size: d.n}
	if d.md5 != nil {
		sum.MD5 = hex.EncodeToString(d.md5.Sum(nil))
	}
	return sum
}

// DigestReader hashes r to its end.
func DigestReader(r io.Reader) (Digests, error) { return DigestReaderFor(r, true) }

// DigestReaderFor hashes r to its end, with or without MD5 (NewDigesterFor).
func DigestReaderFor(r io.Reader, withMD5 bool) (Digests, error) {
	d := NewDigesterFor(withMD5)
	buf := make([]byte, 256<<10)
	_, err := io.CopyBuffer(d, r, buf)
	sum := d.Sum() // also ends the MD5 goroutine
	if err != nil {
		return Digests{}, err
	}
	return sum, nil
}

// DigestFile hashes the file at path.
func DigestFile(path string) (Digests, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digests{}, err
	}
	defer f.Close()
	return DigestReader(f)
}
