package packaging

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/restic/chunker"
)

// ChunkSuffix names a file's chunk index beside it (protocol.md 3.5).
const ChunkSuffix = ".chunks"

// The content-defined chunking every index uses (restic/chunker): boundaries depend on the
// bytes around them, so an insertion moves only its neighbours' chunks. 16 KiB to 256 KiB,
// 64 KiB on average: an image's changed files and metadata cost little more than themselves.
const (
	ChunkPol     = chunker.Pol(0x3DA3358B4DC173)
	ChunkMin     = 16 << 10
	ChunkMax     = 256 << 10
	ChunkAvgBits = 16
)

// Chunk is one chunk of a file.
type Chunk struct {
	Off    int64  `json:"o"`
	Len    int64  `json:"n"`
	SHA256 string `json:"h"`
}

// ChunkIndex is `<file>.chunks`: the chunks of a file of Size bytes, in order.
type ChunkIndex struct {
	Size   int64   `json:"size"`
	Chunks []Chunk `json:"chunks"`
}

// ChunkFile cuts r (the whole file) into chunks with their SHA-256.
func ChunkFile(r io.Reader) (*ChunkIndex, error) {
	c := chunker.NewWithBoundaries(r, ChunkPol, ChunkMin, ChunkMax)
	c.SetAverageBits(ChunkAvgBits)
	buf := make([]byte, ChunkMax)
	idx := &ChunkIndex{}
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			return idx, nil
		}
		if err != nil {
			return nil, err
		}
		idx.Chunks = append(idx.Chunks, Chunk{Off: int64(ch.Start), Len: int64(ch.Length), SHA256: SHA256Hex(ch.Data)})
		idx.Size += int64(ch.Length)
	}
}

// SHA256Hex is the lower-case hex SHA-256 of b, through the digest seam.
func SHA256Hex(b []byte) string {
	h := newSHA256()
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// ErrBadIndex wraps every reason a chunk index is refused.
var ErrBadIndex = errors.New("bad chunk index")

// MaxChunkIndex bounds `<file>.chunks`.
const MaxChunkIndex = 16 << 20

// ParseChunkIndex decodes an untrusted index of a file that must be size bytes: its chunks
// cover it exactly, in order, none larger than ChunkMax.
func ParseChunkIndex(r io.Reader, size int64) (*ChunkIndex, error) {
	var idx ChunkIndex
	if err := decodeSmall(r, MaxChunkIndex, "chunk index", &idx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadIndex, err)
	}
	if idx.Size != size {
		return nil, fmt.Errorf("%w: it is for %d bytes, the release has %d", ErrBadIndex, idx.Size, size)
	}
	var off int64
	for i, c := range idx.Chunks {
		if c.Off != off || c.Len < 1 || c.Len > ChunkMax || !isHex(c.SHA256, 64) {
			return nil, fmt.Errorf("%w: chunk %d (offset %d, %d bytes) does not follow at %d", ErrBadIndex, i, c.Off, c.Len, off)
		}
		off += c.Len
	}
	if off != size {
		return nil, fmt.Errorf("%w: its chunks cover %d of %d bytes", ErrBadIndex, off, size)
	}
	return &idx, nil
}

// KeptPrefix is how many leading chunks of an earlier run's file f are whole.
func (idx *ChunkIndex) KeptPrefix(f *os.File) int {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	buf := make([]byte, ChunkMax)
	for i, c := range idx.Chunks {
		if c.Off+c.Len > fi.Size() {
			return i
		}
		if _, err := f.ReadAt(buf[:c.Len], c.Off); err != nil || SHA256Hex(buf[:c.Len]) != c.SHA256 {
			return i
		}
	}
	return len(idx.Chunks)
}

// OffsetOf is where chunk i starts (the index's size past the last).
func (idx *ChunkIndex) OffsetOf(i int) int64 {
	if i >= len(idx.Chunks) {
		return idx.Size
	}
	return idx.Chunks[i].Off
}
