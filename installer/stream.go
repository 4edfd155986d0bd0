package installer

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"unsafe"

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
	off  int64 // accepted (written, or in buf)
	size int64
	crc  uint32
	buf  []byte // pending writes: the device gets 1 MiB writes (a syscall costs much under emulation)
}

const streamWrite = 1 << 20

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

// Write takes p for the stream's offset (written in 1 MiB writes); never beyond the image's
// size.
func (s *Stream) Write(p []byte) (int, error) {
	if int64(len(p)) > s.size-s.Offset() {
		return 0, fmt.Errorf("write %s: more than the image's %d bytes", s.dev, s.size)
	}
	if s.buf == nil {
		s.buf = make([]byte, 0, streamWrite)
	}
	n := len(p)
	for len(p) > 0 {
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf, p = s.buf[:len(s.buf)+k], p[k:]
		if len(s.buf) == cap(s.buf) {
			if err := s.drain(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// drain writes the pending bytes to the device.
func (s *Stream) drain() error {
	if len(s.buf) == 0 {
		return nil
	}
	n, err := s.f.Write(s.buf)
	s.crc = crc32.Update(s.crc, castagnoli, s.buf[:n])
	s.off += int64(n)
	s.buf = s.buf[:0]
	if err != nil {
		return fmt.Errorf("write %s: %w", s.dev, err)
	}
	return nil
}

// Offset is how many bytes of the image are taken; CRC the CRC-32C of those written (after a
// Flush, all of them).
func (s *Stream) Offset() int64 { return s.off + int64(len(s.buf)) }
func (s *Stream) CRC() uint32   { return s.crc }

// Flush makes every byte written so far durable on the device (a checkpoint may then name
// the offset).
func (s *Stream) Flush() error {
	if err := s.drain(); err != nil {
		return err
	}
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

// ReadBack proves the medium holds the image: its first size bytes read from the medium must
// have the CRC-32C the writer computed from the very bytes it hashed. The device is read with
// O_DIRECT (straight from the medium into an aligned buffer: no page cache to fill, copy and
// drop, the largest CPU cost of a read-back under emulation); where O_DIRECT is refused (tmpfs,
// some files), its cached pages are dropped first (clean once flushed) and it is read as usual.
// Nothing points at the slot before this.
func (p Partitions) ReadBack(slot string, size int64, crc uint32) error {
	dev := p.Devices[slot]
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	direct := err == nil
	if !direct {
		if f, err = os.Open(dev); err != nil {
			return err
		}
		unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED)
	}
	defer f.Close()
	const align = 4096
	raw := make([]byte, 1<<20+align)
	buf := raw[align-int(uintptr(unsafe.Pointer(&raw[0]))%align):][:1<<20]
	h := crc32.New(castagnoli)
	var off int64
	for off < size {
		want := min(int64(len(buf)), size-off)
		if direct { // whole blocks: the tail past the image is read and not counted
			want = (want + align - 1) / align * align
		}
		n, err := io.ReadFull(f, buf[:want])
		if n > 0 {
			h.Write(buf[:min(int64(n), size-off)])
			off += min(int64(n), size-off)
		}
		if err != nil && off < size {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("read back %s: %d bytes, the image has %d", dev, off, size)
			}
			return fmt.Errorf("read back %s: %w", dev, err)
		}
	}
	if got := h.Sum32(); got != crc {
		return fmt.Errorf("read back %s: the medium does not hold what was written (CRC-32C %08x, wrote %08x)", dev, got, crc)
	}
	return nil
}
