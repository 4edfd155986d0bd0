package packaging

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
	"testing"

	sha256simd "github.com/minio/sha256-simd"
)

func TestDigestReaderMatchesStdlib(t *testing.T) {
	data := strings.Repeat("ota-agent ", 100000)
	got, err := DigestReader(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	m := md5.Sum([]byte(data))
	s := sha256.Sum256([]byte(data))
	if got.MD5 != hex.EncodeToString(m[:]) || got.SHA256 != hex.EncodeToString(s[:]) || got.Size != int64(len(data)) {
		t.Fatalf("digests %+v do not match the standard library", got)
	}
}

// Without MD5 the SHA-256 and size are the same and MD5 is left empty (the agent takes it
// from the signed statement).
func TestDigestReaderWithoutMD5(t *testing.T) {
	data := strings.Repeat("ota-agent ", 100000)
	got, err := DigestReaderFor(strings.NewReader(data), false)
	s := sha256.Sum256([]byte(data))
	if err != nil || got.MD5 != "" || got.SHA256 != hex.EncodeToString(s[:]) || got.Size != int64(len(data)) {
		t.Fatalf("digests %+v %v", got, err)
	}
}

// TestDigesterWriteSizes: the batched MD5 goroutine sees exactly the bytes written, in
// order, whatever the write sizes around its 256 KiB batches.
func TestDigesterWriteSizes(t *testing.T) {
	data := make([]byte, 3*batchSize+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	m := md5.Sum(data)
	s := sha256.Sum256(data)
	for _, step := range []int{1, 1000, batchSize - 1, batchSize, batchSize + 1, len(data)} {
		d := NewDigester()
		for off := 0; off < len(data); off += step {
			d.Write(data[off:min(off+step, len(data))])
		}
		got := d.Sum()
		if got.MD5 != hex.EncodeToString(m[:]) || got.SHA256 != hex.EncodeToString(s[:]) || got.Size != int64(len(data)) {
			t.Fatalf("writes of %d: %+v", step, got)
		}
	}
}

// BenchmarkSHA256 compares the two SHA-256 implementations the seam can use; run it on every
// target (make bench does, under QEMU for ARM) before changing sha256_*.go.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 1<<20)
	for _, impl := range []struct {
		name string
		new  func() hash.Hash
	}{{"crypto-sha256", sha256.New}, {"sha256-simd", sha256simd.New}} {
		b.Run(impl.name, func(b *testing.B) {
			h := impl.new()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				h.Write(buf)
			}
		})
	}
}

// BenchmarkDigester measures the seam as used: MD5 and SHA-256 in one pass.
func BenchmarkDigester(b *testing.B) {
	buf := make([]byte, 1<<20)
	d := NewDigester()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		d.Write(buf)
	}
}
