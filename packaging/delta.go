package packaging

import (
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// PatchSuffix is what is appended to a release's object name for the patch from the file
// whose SHA-256 is oldSHA256 (protocol.md 3.5): `.from-<first 16 hex digits>.zst`.
func PatchSuffix(oldSHA256 string) string {
	if len(oldSHA256) < 16 {
		return ""
	}
	return ".from-" + oldSHA256[:16] + ".zst"
}

// MaxPatchWindow bounds the zstd window a patch may ask for: `zstd --long=27` is 128 MiB.
// The decoder's history never exceeds the frame's content size, so memory follows the file.
const MaxPatchWindow = 1 << 27

// ErrBadPatch wraps every reason a patch's output cannot be used.
var ErrBadPatch = errors.New("bad patch")

// ApplyPatch writes to dst what the zstd --patch-from patch makes from old, which must be
// exactly want bytes: a patch that makes more (or less) is refused after want+1 bytes, so a
// hostile one cannot write more than the release's size. Memory: old (the dictionary, read
// once by the caller) plus the decoder's history, at most the output size.
func ApplyPatch(dst io.Writer, patch io.Reader, old []byte, want int64) (int64, error) {
	dec, err := zstd.NewReader(patch, zstd.WithDecoderDictRaw(0, old), zstd.WithDecoderMaxWindow(MaxPatchWindow),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(uint64(want)+1<<20))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadPatch, err)
	}
	defer dec.Close()
	n, err := io.Copy(dst, io.LimitReader(dec, want+1))
	switch {
	case err != nil:
		return n, fmt.Errorf("%w: %v", ErrBadPatch, err)
	case n != want:
		return n, fmt.Errorf("%w: it makes %d bytes or more, the release has %d", ErrBadPatch, n, want)
	}
	return n, nil
}

// MakePatch makes a zstd patch from old to new with the Go encoder (ota-release delta uses
// the zstd command when it is installed: its patches are smaller).
func MakePatch(old, new []byte) ([]byte, error) {
	window := 1 << 10
	for window < len(old)+len(new) && window < MaxPatchWindow {
		window <<= 1
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(0, old), zstd.WithWindowSize(window),
		zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(new, nil), nil
}
