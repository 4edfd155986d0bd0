package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/osimage"
	"github.com/ota-agent/ota-agent/internal/progress"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/packaging"
)

// The OS image on a partition (slots.os.backend: partition) is never staged in state_dir:
// whichever way it comes (a full payload's member, the whole file, a block patch applied
// to the booted partition, chunks), its bytes go straight into the partition not booted.
// The whole file is resumable across power cuts: every slots.os.checkpoint bytes the
// partition is flushed, then the offset is recorded in bbolt (the download's Progress); a
// restart asks for the rest with Range + If-Range and trusts no byte after the checkpoint.
// Whole, the image is hashed once, read back from the medium (osimage.Sink.Finish), and
// those digests are verified like any other's; nothing points at the slot before.

// OSWritten is the OS image streamed into its partition by this Fetcher (nil: none).
func (a *Fetcher) OSWritten() *installer.Written { return a.written }

// openOS opens the partition the image goes to for member's want.Size bytes, from prog's
// checkpoint when it holds (osimage.Slots.Open); every is the checkpoint interval (0: none).
func (a *Fetcher) openOS(member string, want Progress, prog *Progress, every int64) (*osimage.Sink, error) {
	if err := a.fileSizeOK(member, want.Size); err != nil {
		return nil, err
	}
	s, err := a.os.Open(a.db, member, want, prog, every, a.hashMD5, a.step)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fault.ErrRejected, err)
	}
	return s, nil
}

// finishOS ends the image streamed into s: its digests, read back from the medium.
func (a *Fetcher) finishOS(s *osimage.Sink) (packaging.Digests, error) {
	a.status("reading the OS image back from its partition")
	d, w, err := s.Finish()
	if err != nil {
		return d, fmt.Errorf("%w: %v", fault.ErrUnavailable, err)
	}
	if w.Slot != "" { // else held: the image set to try keeps its slot (osimage.Slots.Waiting)
		a.written = &w
	}
	return d, nil
}

// put writes one received binary where it goes: the OS image on a partition into it, any
// other into staging.
func (a *Fetcher) put(st *installer.Staging, member string, e packaging.Entry, r io.Reader) (packaging.Digests, error) {
	if app, _ := splitMember(member); a.isOS(app) {
		return a.putOS(member, Progress{SHA256: e.SHA256, MD5: e.MD5, Size: e.Size}, r, 0)
	}
	return st.WriteFileFor(incoming(member), r, a.hashMD5)
}

// putMember writes one full-payload member where it goes; the OS image with checkpoints
// naming only the member and its size (osimage.PayloadResume).
func (a *Fetcher) putMember(st *installer.Staging, member string, size int64, r io.Reader) (packaging.Digests, error) {
	if app, _ := splitMember(member); a.isOS(app) {
		return a.putOS(member, Progress{Size: size, Payload: true}, r, int64(a.cfg.Slots.OS.Checkpoint))
	}
	return a.put(st, member, packaging.Entry{Size: size}, r)
}

// putOS streams one received OS image of want.Size bytes (a payload member, an offline
// file, a patch's output) from r into its partition, checkpointed every `every` bytes (0:
// never).
func (a *Fetcher) putOS(member string, want Progress, r io.Reader, every int64) (packaging.Digests, error) {
	s, err := a.openOS(member, want, nil, every)
	if err != nil {
		return packaging.Digests{}, err
	}
	if _, err := io.CopyBuffer(s, r, make([]byte, 256<<10)); err != nil {
		s.Abort()
		return packaging.Digests{}, err
	}
	return a.finishOS(s)
}

// streamOS is the whole-file strategy of the OS image: from the CDN into the partition,
// resumed from the last checkpoint (one Range request, If-Range: the strong ETag the first
// answer gave); a server that will not resume, or another object, starts again from zero.
func (a *Fetcher) streamOS(ctx context.Context, item PlanItem, e packaging.Entry) (packaging.Digests, int64, error) {
	member := item.Member()
	src, err := a.proto.FirmwareURL(item.App, e, "")
	if err != nil {
		return packaging.Digests{}, 0, err
	}
	prog, _ := a.db.Progress(member)
	if prog != nil && prog.Payload { // a full payload's image: on from its checkpoint, or from zero
		if prog = osimage.Adopt(prog, e, src); prog != nil {
			a.log.Info("resuming the OS image a full payload was streaming, from the firmware CDN", "file", member, "from", prog.Offset, "of", prog.Size)
		}
	}
	if prog != nil && (prog.Slot == "" || prog.SHA256 != e.SHA256 || prog.MD5 != e.MD5 || e.Size > 0 && prog.Size != e.Size) {
		prog = nil // a download into state_dir, or another release
	}
	var total int64
	for attempt := 0; ; attempt++ {
		d, n, err := a.streamFrom(ctx, item, e, src, prog)
		total += n
		if errors.Is(err, errRestart) && attempt == 0 {
			a.log.Warn("cannot resume the OS image; writing it again from zero", "file", member, "error", err)
			prog = nil
			continue
		}
		if errors.Is(err, errTooBig) {
			err = fmt.Errorf("%w: %v (install.max_file_size)", fault.ErrRejected, err)
		}
		return d, total, err
	}
}

// streamFrom is one GET of the OS image into its partition, from prog's checkpoint (nil:
// from zero).
func (a *Fetcher) streamFrom(ctx context.Context, item PlanItem, e packaging.Entry, src string, prog *Progress) (packaging.Digests, int64, error) {
	var none packaging.Digests
	member := item.Member()
	if prog != nil && prog.Offset == prog.Size && prog.Size > 0 {
		// Complete before a restart: the checkpoint holds its digests.
		return a.resumeComplete(member, prog)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return none, 0, err
	}
	var off int64
	if prog != nil && prog.Offset > 0 && prog.Offset < prog.Size && strongETag(prog.ETag) {
		off = prog.Offset
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		req.Header.Set("If-Range", prog.ETag)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return none, 0, netError("download "+member+" from "+transport.Redact(src), err)
	}
	defer resp.Body.Close()
	size, err := a.osAnswer(resp, member, src, off, prog, e.Size)
	if err != nil {
		return none, 0, err
	}
	if off == 0 {
		prog = nil
	}
	s, err := a.openOS(member, Progress{SHA256: e.SHA256, MD5: e.MD5, Size: size}, prog, int64(a.cfg.Slots.OS.Checkpoint))
	if err != nil {
		return none, 0, err
	}
	if s.Offset() != off { // the checkpoint was not resumable after all
		s.Abort()
		return none, 0, fmt.Errorf("%w: the checkpoint at byte %d cannot be resumed", errRestart, off)
	}
	if t := resp.Header.Get("ETag"); off == 0 && strongETag(t) {
		s.Progress().ETag, s.Progress().URL = t, src
	}
	body := progress.NewReader(resp.Body, item.App+" "+item.Version, off, size, a.status)
	n, err := io.CopyBuffer(s, body, make([]byte, 256<<10))
	if err != nil {
		s.Abort()
		if le := localError("writing the OS image", err); le != nil {
			return none, n, le
		}
		return none, n, netError("download "+member+" from "+transport.Redact(src), err)
	}
	d, err := a.finishOS(s)
	if err == nil && off > 0 { // a resumed image that differs is written again, not refused
		if rerr := osimage.Resumed(d, e); rerr != nil {
			err = fmt.Errorf("%w: %v", errRestart, rerr)
		}
	}
	return d, n, err
}

// osAnswer checks the answer to a GET of the OS image from byte off (a resume: a 206 from
// there, else errRestart) and returns the image's size (size, or when no statement names
// it, the answer's length).
func (a *Fetcher) osAnswer(h *http.Response, member, src string, off int64, prog *Progress, size int64) (int64, error) {
	where := "download " + member + " from " + transport.Redact(src)
	switch {
	case off > 0 && h.StatusCode != http.StatusPartialContent:
		return 0, fmt.Errorf("%w: %s to a resume from byte %d", errRestart, h.Status, off)
	case off > 0 && !strings.HasPrefix(h.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", off, prog.Size-1, prog.Size)):
		return 0, fmt.Errorf("%w: Content-Range %q, asked from byte %d of %d", errRestart, h.Header.Get("Content-Range"), off, prog.Size)
	case off == 0 && (h.StatusCode == http.StatusForbidden || h.StatusCode == http.StatusNotFound):
		return 0, &missingError{fmt.Sprintf("%s: %d (a signed URL may have expired; the next check gets a fresh one)", where, h.StatusCode)}
	case off == 0 && h.StatusCode != http.StatusOK:
		return 0, fmt.Errorf("%w: %s: %s", fault.ErrUnavailable, where, h.Status)
	}
	if err := protocol.NotAPage(h, where); err != nil {
		return 0, err
	}
	switch {
	case off > 0:
		size = prog.Size
	case size == 0 && h.ContentLength <= 0:
		return 0, fmt.Errorf("%w: %s: no Content-Length, and the OS image's size is not known", fault.ErrUnavailable, where)
	case size == 0:
		size = h.ContentLength // no statement names it: the answer's length, within the limit
	}
	if off == 0 && h.ContentLength != size {
		return 0, fmt.Errorf("%w: %s: the server announced %d bytes, the release has %d", fault.ErrUnavailable, where, h.ContentLength, size)
	}
	if limit := int64(a.cfg.Install.MaxFileSize); limit > 0 && size > limit {
		return 0, fmt.Errorf("%w: %s announces %d bytes, at most %d are useful", errTooBig, member, size, limit)
	}
	return size, nil
}

// resumeComplete: an image streamed whole before a restart is read back from its partition.
func (a *Fetcher) resumeComplete(member string, prog *Progress) (packaging.Digests, int64, error) {
	d, w, ok, err := a.os.Finished(a.db, prog, a.hashMD5)
	if err != nil {
		return d, 0, err
	}
	if !ok {
		return d, 0, fmt.Errorf("%w: the finished image's checkpoint does not hold", errRestart)
	}
	if err := osimage.Resumed(d, packaging.Entry{SHA256: prog.SHA256, MD5: prog.MD5, Size: prog.Size}); err != nil {
		return d, 0, fmt.Errorf("%w: %v", errRestart, err)
	}
	a.written = &w
	return d, 0, nil
}
