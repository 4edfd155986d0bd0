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

// Fill reads from r once, straight into the pending buffer (never past the image's size),
// and writes the buffer to the device when it is full: the bytes go from the network to the
// device without a copy between. io.EOF when r has ended; a byte past the image is an error.
func (s *Stream) Fill(r io.Reader) (int, error) {
	if s.buf == nil {
		s.buf = make([]byte, 0, streamWrite)
	}
	room := min(int64(cap(s.buf)-len(s.buf)), s.size-s.Offset())
	if room == 0 { // the image is whole: r must end here
		var one [1]byte
		n, err := r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("write %s: more than the image's %d bytes", s.dev, s.size)
		}
		return 0, err
	}
	n, err := r.Read(s.buf[len(s.buf) : len(s.buf)+int(room)])
	s.buf = s.buf[:len(s.buf)+n]
	if len(s.buf) == cap(s.buf) {
		if derr := s.drain(); derr != nil {
			return n, derr
		}
	}
	return n, err
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

// ReadBack hashes the first size bytes of slot's device as the medium holds them
// (Hasher). The caller checks the digests against the signed statement: nothing points at
// the slot before.
func (p Partitions) ReadBack(slot string, size int64, withMD5 bool) (packaging.Digests, error) {
	h, err := p.OpenHasher(slot, withMD5)
	if err != nil {
		return packaging.Digests{}, err
	}
	err = h.HashTo(size, true)
	return h.Close(), err
}

// Hasher reads a slot's device from the medium and hashes it, in steps up to offsets the
// writer has flushed, so the read-back can run behind a stream as it arrives. The device is
// read with O_DIRECT (straight from the medium into aligned buffers: no page cache to fill,
// copy and drop, the largest CPU cost of a read-back under emulation); where O_DIRECT is
// refused (tmpfs, some files), each range's cached pages are dropped first (clean once
// flushed) and it is read as usual. Reading and hashing overlap (two buffers).
type Hasher struct {
	dev    string
	f      *os.File
	direct bool
	off    int64 // hashed
	d      *packaging.Digester
	full   chan []byte
	free   chan []byte
	done   chan struct{}
}

const readBackBuffer = 1 << 20

// OpenHasher opens slot's device to hash it from byte 0.
func (p Partitions) OpenHasher(slot string, withMD5 bool) (*Hasher, error) {
	dev := p.Devices[slot]
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	direct := err == nil
	if !direct {
		if f, err = os.Open(dev); err != nil {
			return nil, err
		}
	}
	h := &Hasher{dev: dev, f: f, direct: direct, d: packaging.NewDigesterFor(withMD5),
		full: make(chan []byte, 1), free: make(chan []byte, 2), done: make(chan struct{})}
	for range 2 {
		h.free <- alignedBuffer(readBackBuffer)
	}
	go func() {
		defer close(h.done)
		for b := range h.full {
			h.d.Write(b)
			h.free <- b[:cap(b)]
		}
	}()
	return h, nil
}

// HashTo reads and hashes the device up to byte n (flushed by the writer); unless last, an
// O_DIRECT reader stops at the block boundary before n (the next step reads on from an
// aligned offset). A device that ends before n is named.
func (h *Hasher) HashTo(n int64, last bool) error {
	const align = 4096
	if h.direct && !last {
		n -= n % align
	}
	if !h.direct {
		unix.Fadvise(int(h.f.Fd()), h.off, n-h.off, unix.FADV_DONTNEED)
	}
	for h.off < n {
		buf := <-h.free
		want := min(int64(len(buf)), n-h.off)
		if h.direct { // whole blocks at aligned offsets: a tail is read again with the next step
			want = (want + align - 1) / align * align
		}
		k, err := h.f.ReadAt(buf[:want], h.off)
		take := min(int64(k), n-h.off)
		if h.direct && h.off+take < n {
			take -= take % align // the next read starts at a block boundary
		}
		if take > 0 {
			h.full <- buf[:take]
			h.off += take
		} else {
			h.free <- buf
		}
		if err != nil && h.off < n {
			if err == io.EOF {
				return fmt.Errorf("read back %s: %d bytes, the image has %d", h.dev, h.off, n)
			}
			return fmt.Errorf("read back %s: %w", h.dev, err)
		}
	}
	return nil
}

// Offset is how many bytes are hashed.
func (h *Hasher) Offset() int64 { return h.off }

// Close ends the hashing and returns the digests of the bytes hashed.
func (h *Hasher) Close() packaging.Digests {
	close(h.full)
	<-h.done
	h.f.Close()
	return h.d.Sum()
}

// alignedBuffer is n bytes aligned for O_DIRECT.
func alignedBuffer(n int) []byte {
	const align = 4096
	raw := make([]byte, n+align)
	return raw[align-int(uintptr(unsafe.Pointer(&raw[0]))%align):][:n]
}
