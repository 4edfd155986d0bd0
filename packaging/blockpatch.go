package packaging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Block patches: a patch for a large file (an OS image) that a device applies with bounded
// memory. The new file is cut into blocks; each block is a zstd frame made with the old file's
// bytes around the same place (the block, widened by a margin) as its dictionary, so an image
// whose files kept their places costs little more than a whole-file patch, and the device holds
// one window at a time. `<binary>.from-<h16>.blocks`: a first line
// "ota-blocks-v1 <header length>", the JSON header, then the frames in order.
const BlockPatchSuffix = ".blocks"

// Block-patch geometry: 2 MiB blocks, 512 KiB of margin on each side (a device holds 3 MiB
// of the old file and one block of history at a time).
const (
	PatchBlock  = 2 << 20
	PatchMargin = 512 << 10
)

// BlockPatchAbove is the agents' default delta.max_source: larger installed files take a
// block patch (≤ 24 MiB peak RSS; a whole-file patch holds ~2× the file), so `ota-release
// delta` writes one beside the whole-file patch for them.
const BlockPatchAbove = 4 << 20

// BlockHeader describes a block patch.
type BlockHeader struct {
	Size   int64   `json:"size"`   // the new file's size
	Block  int64   `json:"block"`  // bytes of new file per frame
	Margin int64   `json:"margin"` // old bytes on each side of the block's place in the dictionary
	Frames []int64 `json:"frames"` // each frame's length, in order
}

func window(oldSize, off, block, margin int64) (int64, int64) {
	from, to := max(0, off-margin), min(oldSize, off+block+margin)
	if from > to {
		from = to
	}
	return from, to
}

// MakeBlockPatch writes a block patch from old to new.
func MakeBlockPatch(w io.Writer, old, new io.ReaderAt, oldSize, newSize int64) error {
	h := BlockHeader{Size: newSize, Block: PatchBlock, Margin: PatchMargin}
	var frames [][]byte
	buf := make([]byte, PatchBlock)
	for off := int64(0); off < newSize; off += PatchBlock {
		n := min(PatchBlock, newSize-off)
		if _, err := new.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return err
		}
		from, to := window(oldSize, off, PatchBlock, PatchMargin)
		dict := make([]byte, to-from)
		if _, err := old.ReadAt(dict, from); err != nil && err != io.EOF {
			return err
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(0, dict), zstd.WithWindowSize(4<<20),
			zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		f := enc.EncodeAll(buf[:n], nil)
		enc.Close()
		frames = append(frames, f)
		h.Frames = append(h.Frames, int64(len(f)))
	}
	raw, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "ota-blocks-v1 %d\n", len(raw)); err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	for _, f := range frames {
		if _, err := w.Write(f); err != nil {
			return err
		}
	}
	return nil
}

// ApplyBlockPatch writes to dst the want bytes the block patch makes from old (oldSize
// bytes): memory is one window of old plus one block. Anything that does not add up is
// ErrBadPatch.
func ApplyBlockPatch(dst io.Writer, patch io.Reader, old io.ReaderAt, oldSize, want int64) (int64, error) {
	br := bufio.NewReader(patch)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ota-blocks-v1 ") {
		return 0, fmt.Errorf("%w: not a block patch", ErrBadPatch)
	}
	hl, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "ota-blocks-v1 ")))
	if err != nil || hl < 2 || hl > 1<<20 {
		return 0, fmt.Errorf("%w: header length %q", ErrBadPatch, line)
	}
	raw := make([]byte, hl)
	if _, err := io.ReadFull(br, raw); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadPatch, err)
	}
	var h BlockHeader
	if err := json.Unmarshal(raw, &h); err != nil || h.Size != want || h.Block != PatchBlock || h.Margin != PatchMargin ||
		int64(len(h.Frames)) != (want+PatchBlock-1)/PatchBlock {
		return 0, fmt.Errorf("%w: header %s does not describe a %d-byte file", ErrBadPatch, raw, want)
	}
	var n int64
	dict := make([]byte, PatchBlock+2*PatchMargin)
	for i, fl := range h.Frames {
		off := int64(i) * PatchBlock
		from, to := window(oldSize, off, PatchBlock, PatchMargin)
		if _, err := old.ReadAt(dict[:to-from], from); err != nil && err != io.EOF {
			return n, err
		}
		if fl < 1 || fl > 2*PatchBlock {
			return n, fmt.Errorf("%w: frame %d is %d bytes", ErrBadPatch, i, fl)
		}
		k, err := applyFrame(dst, io.LimitReader(br, fl), dict[:to-from], min(PatchBlock, want-off))
		n += k
		if err != nil {
			return n, fmt.Errorf("block %d: %w", i, err)
		}
		runtime.GC() // each frame's decoder is garbage now: keep the peak at one window

	}
	if extra, _ := br.Read(make([]byte, 1)); extra > 0 {
		return n, fmt.Errorf("%w: data after the last frame", ErrBadPatch)
	}
	return n, nil
}

func applyFrame(dst io.Writer, frame io.Reader, dict []byte, want int64) (int64, error) {
	raw, err := io.ReadAll(frame)
	if err != nil {
		return 0, err
	}
	return ApplyPatch(dst, bytes.NewReader(raw), dict, want)
}
