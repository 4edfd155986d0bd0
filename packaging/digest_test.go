package packaging

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"math/rand/v2"
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

// A Digester resumed from a state saved at any offset ends with the digests of the whole.
func TestDigesterResumesFromItsState(t *testing.T) {
	data := make([]byte, 3<<20+17)
	rand.NewChaCha8([32]byte{1}).Read(data)
	for _, withMD5 := range []bool{false, true} {
		want, _ := DigestReaderFor(bytes.NewReader(data), withMD5)
		for _, cut := range []int{0, 1, 4095, 256 << 10, 1<<20 + 3, len(data)} {
			d := NewDigesterFor(withMD5)
			d.Write(data[:cut])
			state, err := d.State()
			if err != nil {
				t.Fatal(err)
			}
			d.Write([]byte("more after the state: ignored by the resumed one"))
			d.Sum()
			r, err := ResumeDigester(state, withMD5)
			if err != nil {
				t.Fatal(err)
			}
			r.Write(data[cut:])
			if got := r.Sum(); got != want {
				t.Errorf("md5 %v, cut at %d: %+v, want %+v", withMD5, cut, got, want)
			}
		}
	}
	if _, err := ResumeDigester([]byte("garbage!!!!!"), false); err == nil {
		t.Error("a garbage state was accepted")
	}
	d := NewDigesterFor(false)
	state, _ := d.State()
	if _, err := ResumeDigester(state, true); err == nil {
		t.Error("a state without MD5 resumed a digester that needs it")
	}
}
