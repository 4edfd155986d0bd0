package installer

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// An OS image is streamed into the partition that is not booted: its bytes go from the
// network (or a patch, or chunks) straight onto the device, never into state_dir. The writer
// keeps a CRC-32C of what it wrote, so the read-back from the medium after the last flush is
// one cheap pass with nothing to compare against but that number (docs/bootloader.md: why a
// CRC and not the SHA-256 again).

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Written is an image streamed whole into a slot and flushed: what the read-back checks.
type Written struct {
	Slot string
	Size int64
	CRC  uint32 // CRC-32C of the bytes written
}

// Stream writes an image into a slot's device in order, from an offset a checkpoint names.
type Stream struct {
	Slot string
	dev  string
	f    *os.File
	off  int64
	size int64
	crc  uint32
}

// OpenStream opens slot's device to write size bytes of an image from off (0, or a
// checkpoint whose bytes were flushed) with crc the CRC-32C of the bytes before off. The
// target is checked first: not the booted slot, not mounted, large enough.
func (p Partitions) OpenStream(slot, booted string, size, off int64, crc uint32) (*Stream, error) {
	if err := p.CheckTarget(slot, booted, size); err != nil {
		return nil, err
	}
	if off < 0 || off > size {
		return nil, fmt.Errorf("resume offset %d outside the image's %d bytes", off, size)
	}
	dev := p.Devices[slot]
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek %s to %d: %w", dev, off, err)
	}
	return &Stream{Slot: slot, dev: dev, f: f, off: off, size: size, crc: crc}, nil
}

// Write writes p at the stream's offset; never beyond the image's size.
func (s *Stream) Write(p []byte) (int, error) {
	if int64(len(p)) > s.size-s.off {
		return 0, fmt.Errorf("write %s: more than the image's %d bytes", s.dev, s.size)
	}
	n, err := s.f.Write(p)
	s.crc = crc32.Update(s.crc, castagnoli, p[:n])
	s.off += int64(n)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", s.dev, err)
	}
	return n, nil
}

// Offset is how many bytes of the image are written; CRC their CRC-32C.
func (s *Stream) Offset() int64 { return s.off }
func (s *Stream) CRC() uint32   { return s.crc }

// Flush makes every byte written so far durable on the device (a checkpoint may then name
// the offset).
func (s *Stream) Flush() error {
	if err := s.f.Sync(); err != nil { // a failed fsync fails the install (no retry)
		return fmt.Errorf("flush %s: %w", s.dev, err)
	}
	return nil
}

// Close flushes and closes the device.
func (s *Stream) Close() error {
	err := s.Flush()
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", s.dev, cerr)
	}
	return err
}

// Abort closes the device without flushing (a failed transfer: its checkpoint stays the
// last flushed one).
func (s *Stream) Abort() { s.f.Close() }

// ReadBack proves the medium holds the image: the device's cached pages dropped (they are
// clean once flushed), its first size bytes read from the medium must have the CRC-32C the
// writer computed from the very bytes it hashed. Nothing points at the slot before this.
func (p Partitions) ReadBack(slot string, size int64, crc uint32) error {
	dev := p.Devices[slot]
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED)
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(h, io.LimitReader(f, size), make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("read back %s: %w", dev, err)
	}
	if n != size {
		return fmt.Errorf("read back %s: %d bytes, the image has %d", dev, n, size)
	}
	if got := h.Sum32(); got != crc {
		return fmt.Errorf("read back %s: the medium does not hold what was written (CRC-32C %08x, wrote %08x)", dev, got, crc)
	}
	return nil
}
