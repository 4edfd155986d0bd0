package installer

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ota-agent/ota-agent/packaging"
)

// An OS image is streamed into the partition that is not booted: its bytes go from the
// network (or a patch, or chunks) straight onto the device, never into state_dir, and are
// hashed once, from the medium, after the last flush (ReadBack): the digests the statement is
// checked against are those of what the partition holds (docs/bootloader.md: why hash once,
// from the medium).

// Written is an image streamed whole into a slot, flushed and read back: the slot, its size
// and the digests of what the medium holds.
type Written struct {
	Slot string
	Size int64
	Sum  packaging.Digests
}

// Stream writes an image into a slot's device in order, from an offset a checkpoint names.
type Stream struct {
	Slot string
	dev  string
	f    *os.File
	off  int64 // accepted (written, or in buf)
	size int64
	buf  []byte // pending writes: the device gets 1 MiB writes (a syscall costs much under emulation)
}

const streamWrite = 1 << 20

// OpenStream opens slot's device to write size bytes of an image from off (0, or a
// checkpoint whose bytes were flushed). The target is checked first: not the booted slot,
// not mounted, large enough.
func (p Partitions) OpenStream(slot, booted string, size, off int64) (*Stream, error) {
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
	return &Stream{Slot: slot, dev: dev, f: f, off: off, size: size}, nil
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
	s.off += int64(n)
	s.buf = s.buf[:0]
	if err != nil {
		return fmt.Errorf("write %s: %w", s.dev, err)
	}
	return nil
}

// Offset is how many bytes of the image are taken (after a Flush, all on the medium).
func (s *Stream) Offset() int64 { return s.off + int64(len(s.buf)) }

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

// ReadBack hashes the first size bytes of slot's device as the medium holds them: the
// device is read with O_DIRECT (straight from the medium into aligned buffers: no page cache
// to fill, copy and drop, the largest CPU cost of a read-back under emulation); where
// O_DIRECT is refused (tmpfs, some files), its cached pages are dropped first (clean once
// flushed) and it is read as usual. Reading and hashing overlap (two buffers). The caller
// checks the digests against the signed statement: nothing points at the slot before.
func (p Partitions) ReadBack(slot string, size int64, withMD5 bool) (packaging.Digests, error) {
	dev := p.Devices[slot]
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	direct := err == nil
	if !direct {
		if f, err = os.Open(dev); err != nil {
			return packaging.Digests{}, err
		}
		unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED)
	}
	defer f.Close()
	d := packaging.NewDigesterFor(withMD5)
	full, free := make(chan []byte, 1), make(chan []byte, 2)
	for range 2 {
		free <- alignedBuffer(readBackBuffer)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			d.Write(b)
			free <- b[:cap(b)]
		}
	}()
	off, err := readInto(f, direct, size, full, free)
	close(full)
	<-done
	sum := d.Sum()
	if err != nil {
		return sum, fmt.Errorf("read back %s: %w", dev, err)
	}
	if off < size {
		return sum, fmt.Errorf("read back %s: %d bytes, the image has %d", dev, off, size)
	}
	return sum, nil
}

const readBackBuffer = 1 << 20

// alignedBuffer is n bytes aligned for O_DIRECT.
func alignedBuffer(n int) []byte {
	const align = 4096
	raw := make([]byte, n+align)
	return raw[align-int(uintptr(unsafe.Pointer(&raw[0]))%align):][:n]
}

// readInto reads the first size bytes of f into buffers taken from free and hands each
// filled one to full; with direct, whole blocks are read (the tail past size is not
// handed on). It returns how many bytes it handed on.
func readInto(f *os.File, direct bool, size int64, full, free chan []byte) (int64, error) {
	const align = 4096
	var off int64
	for off < size {
		buf := <-free
		want := min(int64(len(buf)), size-off)
		if direct {
			want = (want + align - 1) / align * align
		}
		n, err := io.ReadFull(f, buf[:want])
		take := min(int64(n), size-off)
		if take > 0 {
			full <- buf[:take]
			off += take
		}
		if err != nil && off < size {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return off, nil
			}
			return off, err
		}
	}
	return off, nil
}
