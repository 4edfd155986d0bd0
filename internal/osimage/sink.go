package osimage

import (
	"fmt"
	"io"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Sink is one OS image on its way into the partition not booted: every `every` bytes the
// partition is flushed, then the offset is recorded in the image's resume record
// (store.Progress), so a restart goes on from there and trusts no byte after it. The image
// is hashed once, from the medium (SHA-256, and MD5 when asked), behind the writer: each
// flushed range as the stream goes on (behind), the rest when it is whole (Finish).
type Sink struct {
	db     *store.DB
	member string
	prog   *store.Progress
	w      *installer.Stream
	d      *packaging.Digester // a held image (hashed only)
	back   *behind
	every  int64 // checkpoint interval (0: none)
	last   int64
	step   func(string)
}

// Open opens the partition an image is streamed into for member's want.Size bytes (want
// names the release: SHA-256, MD5, size): from the checkpoint resume records when it is
// this release's on the target slot, else from zero. While an image is set to try
// (Waiting) the sink only hashes. step is called after each checkpoint (the tests' crash
// points).
func (s *Slots) Open(db *store.DB, member string, want store.Progress, resume *store.Progress, every int64, withMD5 bool, step func(string)) (*Sink, error) {
	if s.Waiting(db) != nil { // hashed only: the image set to try keeps its slot
		return &Sink{db: db, member: member, prog: &store.Progress{Size: want.Size}, d: packaging.NewDigesterFor(withMD5), step: step}, nil
	}
	target, booted, err := s.Target(db)
	if err != nil {
		return nil, err
	}
	k := &Sink{db: db, member: member, every: every, step: step}
	if r := resume; r != nil && r.Slot == target && r.Size == want.Size && r.SHA256 == want.SHA256 && r.MD5 == want.MD5 && r.Offset > 0 && r.Offset <= r.Size {
		r.Hash, r.CRC = nil, 0 // an older agent's checkpoint: the bytes are hashed from the medium
		k.prog, k.last = r, r.Offset
	}
	if k.prog == nil {
		k.prog = &store.Progress{SHA256: want.SHA256, MD5: want.MD5, Size: want.Size, Slot: target, Payload: want.Payload}
	}
	if k.w, err = s.Parts.OpenStream(target, booted, want.Size, k.prog.Offset); err != nil {
		return nil, fmt.Errorf("OS slot %s: %w", target, err)
	}
	if k.back, err = startBehind(s.Parts, target, withMD5); err != nil {
		k.w.Abort()
		return nil, fmt.Errorf("OS slot %s: %w", target, err)
	}
	k.back.flushed(k.prog.Offset) // a checkpoint's bytes are on the medium
	return k, nil
}

// Waiting is the OS image set to try at the next boot, if any. While it waits its slot is
// not written: an answer not yet verified must not cancel a verified image, so a newer one
// is only hashed (verified, not installed) and follows after that reboot.
func (s *Slots) Waiting(db *store.DB) *store.OSState {
	o, err := db.OS()
	if err != nil || o == nil || o.Try == "" || !o.EnvSet {
		return nil
	}
	return o
}

// Offset is how many bytes of the image are in the partition (hashed, for a held image).
func (k *Sink) Offset() int64 {
	if k.w == nil {
		return k.d.Len()
	}
	return k.w.Offset()
}

// Progress is the image's resume record (the caller adds the ETag and URL to resume with).
func (k *Sink) Progress() *store.Progress { return k.prog }

// Write writes p into the partition (a held image: hashes it); past each interval the bytes
// are flushed and the checkpoint recorded.
func (k *Sink) Write(p []byte) (int, error) {
	if k.w == nil {
		return k.d.Write(p)
	}
	n, err := k.w.Write(p)
	if err == nil && k.every > 0 && k.w.Offset()-k.last >= k.every {
		err = k.checkpoint()
	}
	return n, err
}

// ReadFrom streams r into the partition (Stream.Fill: no copy between the network's buffer
// and the device's), with the checkpoints of Write; io.Copy takes it.
func (k *Sink) ReadFrom(r io.Reader) (int64, error) {
	if k.w == nil {
		return io.Copy(struct{ io.Writer }{k.d}, r)
	}
	var total int64
	for {
		n, err := k.w.Fill(r)
		total += int64(n)
		if err == nil && k.every > 0 && k.w.Offset()-k.last >= k.every {
			err = k.checkpoint()
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// checkpoint flushes the partition, then records the offset.
func (k *Sink) checkpoint() error {
	if err := k.w.Flush(); err != nil {
		return err
	}
	k.prog.Offset, k.last = k.w.Offset(), k.w.Offset()
	k.back.flushed(k.last)
	if err := k.db.SetProgress(k.member, k.prog); err != nil {
		return err
	}
	k.step("os-checkpoint")
	return nil
}

// Finish ends a whole image: flushed, its last checkpoint recorded (when it keeps them),
// and read back from the medium: the digests of what the partition holds.
func (k *Sink) Finish() (packaging.Digests, installer.Written, error) {
	if k.Offset() != k.prog.Size {
		k.Abort()
		return packaging.Digests{}, installer.Written{}, fmt.Errorf("%s ended after %d of its %d bytes", k.member, k.Offset(), k.prog.Size)
	}
	if k.w == nil { // held: nothing written
		return k.d.Sum(), installer.Written{}, nil
	}
	if k.every > 0 && k.last != k.w.Offset() {
		if err := k.checkpoint(); err != nil {
			k.Abort()
			return packaging.Digests{}, installer.Written{}, err
		}
	}
	if err := k.w.Close(); err != nil {
		k.back.abort()
		return packaging.Digests{}, installer.Written{}, err
	}
	sum, err := k.back.finish(k.prog.Size)
	if err != nil {
		return sum, installer.Written{}, fmt.Errorf("OS slot %s: %w", k.w.Slot, err)
	}
	return sum, installer.Written{Slot: k.w.Slot, Size: k.prog.Size, Sum: sum}, nil
}

// Abort leaves the partition at its last checkpoint.
func (k *Sink) Abort() {
	if k.w != nil {
		k.w.Abort()
		k.back.abort()
	}
	if k.d != nil {
		k.d.Sum()
	}
}

// Finished is an image streamed whole before a restart (its last checkpoint is its end,
// on the target slot): its digests, read back from the medium; false when the checkpoint
// does not hold.
func (s *Slots) Finished(db *store.DB, prog *store.Progress, withMD5 bool) (packaging.Digests, installer.Written, bool, error) {
	target, _, err := s.Target(db)
	if err != nil {
		return packaging.Digests{}, installer.Written{}, false, err
	}
	if target != prog.Slot || prog.Size <= 0 || prog.Offset != prog.Size {
		return packaging.Digests{}, installer.Written{}, false, nil
	}
	sum, err := s.Parts.ReadBack(target, prog.Size, withMD5)
	if err != nil {
		return sum, installer.Written{}, false, fmt.Errorf("OS slot %s: %w", target, err)
	}
	return sum, installer.Written{Slot: target, Size: prog.Size, Sum: sum}, true, nil
}
