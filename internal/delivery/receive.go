package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cavaliergopher/grab/v3"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/progress"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/packaging"
)

// transportReader remembers the error of the network body, so a failed extraction can tell
// a broken link (try later) from a bad archive (rejected).
type transportReader struct {
	r   io.Reader
	n   int64
	err error
}

func (t *transportReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// ReceivePayload streams the full payload into the staging directory: gunzip → tar → files,
// hashed as they are written; nothing is held in memory but copy buffers.
func (a *Fetcher) ReceivePayload(resp *http.Response, st *installer.Staging) (*packaging.Details, map[string]packaging.Digests, int64, error) {
	if ce := strings.ToLower(resp.Header.Get("Content-Encoding")); ce != "" && ce != "gzip" {
		return nil, nil, 0, fmt.Errorf("%w: full payload with Content-Encoding %q", fault.ErrRejected, ce)
	}
	// The compressed size is a floor for what the files will take (binaries barely shrink),
	// unless an OS image in it goes to its partition (each member is checked at its header).
	if a.os == nil {
		if err := a.needSpace(resp.ContentLength, "this payload"); err != nil {
			return nil, nil, 0, err
		}
	}
	body := &transportReader{r: resp.Body}
	fail := func(err error) (*packaging.Details, map[string]packaging.Digests, int64, error) {
		if le := localError("receiving the payload", err); le != nil {
			return nil, nil, body.n, le
		}
		if body.err != nil {
			return nil, nil, body.n, fmt.Errorf("%w: receiving the payload: %v", fault.ErrUnavailable, body.err)
		}
		return nil, nil, body.n, fmt.Errorf("%w: %v", fault.ErrRejected, err)
	}
	limits := packaging.DefaultLimits // install.max_file_size is checked below, by name
	limits.MaxMemberSize = max(limits.MaxMemberSize, int64(a.cfg.Install.MaxFileSize))
	pr, err := packaging.NewPayloadReader(body, limits)
	if err != nil {
		return fail(err)
	}
	got := map[string]packaging.Digests{}
	for {
		name, size, r, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		// Refused at its header, before a byte is written: a member too large, or one the
		// disk cannot hold.
		if err := a.fileSizeOK(name, size); err != nil {
			return nil, nil, body.n, err
		}
		if app, _ := splitMember(name); !a.isOS(app) { // the OS image goes to its partition
			if err := a.needSpace(size, "payload member "+name); err != nil {
				return nil, nil, body.n, err
			}
		}
		a.status(progress.Text(name, 0, size, 0))
		d, err := a.putMember(st, name, size, progress.NewReader(r, name, 0, size, a.status))
		if err != nil {
			return fail(err)
		}
		got[name] = d
	}
	return pr.Details(), got, body.n, nil
}

var errRestart = errors.New("server ignored the resume request")

// download fetches one binary with grab into state_dir/downloads, resuming a partial file
// across restarts with Range + If-Range (the strong ETag recorded in bbolt), accepting only a
// 206 that starts where it asked; a 200 or a stale partial restarts from zero.
func (a *Fetcher) download(ctx context.Context, item PlanItem, e packaging.Entry, st *installer.Staging) (packaging.Digests, int64, error) {
	src, err := a.proto.FirmwareURL(item.App, e, "")
	if err != nil {
		return packaging.Digests{}, 0, err
	}
	root, err := a.slots.Root()
	if err != nil {
		return packaging.Digests{}, 0, err
	}
	if err := root.MkdirAll("downloads", 0o755); err != nil {
		return packaging.Digests{}, 0, fmt.Errorf("%s: %w", filepath.Join(a.slots.Dir, "downloads"), err)
	}
	member := item.Member()
	name := "downloads/" + member
	prog, _ := a.db.Progress(member)
	if prog == nil || prog.SHA256 != e.SHA256 || prog.MD5 != e.MD5 || prog.Size != e.Size || !strongETag(prog.ETag) {
		root.Remove(name) // a partial file nobody vouches for is not resumed
		prog = &Progress{SHA256: e.SHA256, MD5: e.MD5, Size: e.Size}
	}
	label := item.App + " " + item.Version
	sum := &streamSum{withMD5: a.hashMD5}
	defer sum.digests(0) // a failed download's hashing goroutine ends
	limit := int64(0)    // the release's size, exactly, when the entry names it
	if e.Size == 0 {
		limit = int64(a.cfg.Install.MaxFileSize)
	}
	n, err := a.grabResuming(ctx, root, member, label, src, prog, limit, sum)
	if errors.Is(err, errTooBig) {
		return packaging.Digests{}, n, fmt.Errorf("%w: %v (install.max_file_size)", fault.ErrRejected, err)
	}
	if err != nil {
		return packaging.Digests{}, n, err
	}
	d, ok := sum.digests(e.Size)
	if !ok { // resumed: the prefix came from the disk, so the file is read to be hashed
		if d, err = a.slots.Digest(name, a.hashMD5); err != nil {
			return packaging.Digests{}, n, err
		}
	}
	if err := st.Adopt(name, incoming(member)); err != nil {
		return packaging.Digests{}, n, err
	}
	return d, n, nil
}

// Drop forgets a finished (installed, or refused) download and its resume record.
func (a *Fetcher) Drop(member string) { a.dropDownload(member) }

func (a *Fetcher) dropDownload(member string) {
	if root, err := a.slots.Root(); err == nil {
		root.Remove("downloads/" + member)
	}
	if err := a.db.SetProgress(member, nil); err != nil {
		a.log.Warn("could not forget the resume record of a download", "member", member, "err", err)
	}
}

func strongETag(t string) bool {
	return len(t) > 2 && strings.HasPrefix(t, `"`) && strings.HasSuffix(t, `"`)
}

// grabResuming is grab, once more from zero when the server refuses the resume.
func (a *Fetcher) grabResuming(ctx context.Context, root *os.Root, member, label, src string, prog *Progress, limit int64, sum *streamSum) (int64, error) {
	n, err := a.grab(ctx, root, member, label, src, prog, limit, sum)
	if errors.Is(err, errRestart) {
		a.log.Warn("resume refused by the server; downloading again from zero", "file", member, "error", err)
		root.Remove("downloads/" + member)
		prog.ETag = ""
		var n2 int64
		n2, err = a.grab(ctx, root, member, label, src, prog, limit, sum)
		n += n2
	}
	return n, err
}

// missingError: the CDN answered 403 or 404 for the object.
type missingError struct{ msg string }

func (e *missingError) Error() string { return e.msg }

// errTooBig: the server announced more (or did not say how much) than limit allows.
var errTooBig = errors.New("larger than it may be")

// grab downloads src into downloads/member: prog.Size bytes exactly, or (prog.Size 0) at
// most limit bytes, announced by Content-Length. A download from byte 0 is hashed into sum
// (when given) as grab reads it.
func (a *Fetcher) grab(ctx context.Context, root *os.Root, member, label, src string, prog *Progress, limit int64, sum *streamSum) (int64, error) {
	// grab opens the file by its path: what is there now must be a regular file (or
	// nothing), never a link it would write through.
	name := "downloads/" + member
	dst := filepath.Join(a.slots.Dir, name)
	fi, err := root.Lstat(name)
	if err == nil && !fi.Mode().IsRegular() {
		if err := root.RemoveAll(name); err != nil {
			return 0, fmt.Errorf("remove %s: %w", dst, err)
		}
		a.log.Error("removed what was planted in the state directory", "path", dst, "was", fi.Mode().Type().String())
		fi = nil
	}
	req, err := grab.NewRequest(dst, src)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", member, err)
	}
	req = req.WithContext(ctx)
	req.Size = prog.Size
	req.IgnoreRemoteTime = true
	req.NoCreateDirectories = true
	var offset int64
	if fi != nil && fi.Size() > 0 {
		offset = fi.Size()
		req.HTTPRequest.Header.Set("If-Range", prog.ETag) // grab adds Range, never If-Range
	} else if fi != nil {
		// An empty partial (a power cut before its bytes reached the disk): grab would
		// "resume" it with bytes=0- and get a 206; start afresh instead.
		root.Remove(name)
	}
	req.BeforeCopy = func(r *grab.Response) error {
		h := r.HTTPResponse
		if r.DidResume && offset > 0 {
			if h.StatusCode != http.StatusPartialContent {
				return fmt.Errorf("%w: %s to a resume from byte %d", errRestart, h.Status, offset)
			}
			if !strings.HasPrefix(h.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", offset)) {
				return fmt.Errorf("%w: Content-Range %q, asked from byte %d", errRestart, h.Header.Get("Content-Range"), offset)
			}
		} else if h.StatusCode != http.StatusOK {
			return fmt.Errorf("download %s: %s", member, h.Status)
		}
		if err := protocol.NotAPage(h, "download "+member+" from "+transport.Redact(src)); err != nil {
			return err
		}
		if limit > 0 && (h.ContentLength < 0 || offset+h.ContentLength > limit) {
			return fmt.Errorf("%w: %s announces %d bytes, at most %d are useful", errTooBig, member, offset+h.ContentLength, limit)
		}
		if t := h.Header.Get("ETag"); strongETag(t) && t != prog.ETag {
			prog.ETag, prog.URL = t, src
			return a.db.SetProgress(member, prog)
		}
		return nil
	}
	c := &grab.Client{HTTPClient: sum.client(a.http, offset), BufferSize: 256 << 10} // no UserAgent: the client's transport sets the agent's
	resp := c.Do(req)
	a.watchProgress(label, resp)
	err = resp.Err()
	n := resp.BytesComplete() - offset
	if n < 0 || err == nil && resp.DidResume && offset > 0 && resp.HTTPResponse == nil {
		n = 0
	}
	var sc grab.StatusCodeError
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, errRestart), errors.Is(err, errTooBig):
		return n, err
	case errors.Is(err, grab.ErrBadLength) && offset > 0:
		return n, fmt.Errorf("%w: %v", errRestart, err)
	case errors.Is(err, grab.ErrBadLength):
		return n, fmt.Errorf("%w: download %s from %s: the server announced a size other than the release's %d bytes", fault.ErrUnavailable, member, transport.Redact(src), prog.Size)
	case errors.As(err, &sc) && (int(sc) == 416):
		return n, fmt.Errorf("%w: 416", errRestart)
	case errors.As(err, &sc) && (int(sc) == 403 || int(sc) == 404):
		return n, &missingError{fmt.Sprintf("download %s from %s: %d (a signed URL may have expired; the next check gets a fresh one)", member, transport.Redact(src), int(sc))}
	}
	return n, netError("download "+member+" from "+transport.Redact(src), err)
}

// watchProgress reports a download's progress once a second until it is done.
func (a *Fetcher) watchProgress(label string, resp *grab.Response) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-resp.Done:
			return
		case <-t.C:
			if size := resp.Size(); size > 0 {
				a.status(progress.Text(label, resp.BytesComplete(), size, resp.BytesPerSecond()))
			}
		}
	}
}
