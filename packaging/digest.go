// Package packaging holds the wire formats shared by the agent and the testserver: the
// gzip'd tar payload, the package_details JSON, signed release statements and the digest seam.
package packaging

import (
	"crypto/md5"
	"encoding/hex"
	"hash"
	"io"
	"os"
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
}

// NewDigester returns an empty Digester.
func NewDigester() *Digester {
	return &Digester{md5: md5.New(), sha: newSHA256()}
}

// Write hashes p; it never fails.
func (d *Digester) Write(p []byte) (int, error) {
	d.md5.Write(p)
	d.sha.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

// Sum returns the digests of what was written so far.
func (d *Digester) Sum() Digests {
	return Digests{
		MD5:    hex.EncodeToString(d.md5.Sum(nil)),
		SHA256: hex.EncodeToString(d.sha.Sum(nil)),
		Size:   d.n,
	}
}

// DigestReader hashes r to its end.
func DigestReader(r io.Reader) (Digests, error) {
	d := NewDigester()
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(d, r, buf); err != nil {
		return Digests{}, err
	}
	return d.Sum(), nil
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
