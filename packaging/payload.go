package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// recordSize is the tar record Python's tarfile pads an archive to.
const recordSize = 10240

// PayloadWriter streams a full payload: gzip'd tar, one member per binary, mode 0644, mtime
// 0, then package_details.json, padded to a 10240-byte record like Python's tarfile.
type PayloadWriter struct {
	gz *gzip.Writer
	cw *countWriter
	tw *tar.Writer
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewPayloadWriter starts a payload on w; mtime goes in the gzip header, as the reference's
// build time does (so two identical answers differ in bytes).
func NewPayloadWriter(w io.Writer, mtime time.Time) *PayloadWriter {
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	gz.ModTime = mtime
	cw := &countWriter{w: gz}
	return &PayloadWriter{gz: gz, cw: cw, tw: tar.NewWriter(cw)}
}

// Add writes one member of size bytes read from r.
func (p *PayloadWriter) Add(name string, size int64, r io.Reader) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
		ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(p.tw, r, size); err != nil {
		return fmt.Errorf("write member %s: %w", name, err)
	}
	return nil
}

// Close writes package_details.json, ends the archive and the gzip stream.
func (p *PayloadWriter) Close(details []byte) error {
	if err := p.Add(DetailsName, int64(len(details)), bytes.NewReader(details)); err != nil {
		return err
	}
	if err := p.tw.Close(); err != nil {
		return err
	}
	if pad := (recordSize - p.cw.n%recordSize) % recordSize; pad > 0 {
		if _, err := p.cw.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return p.gz.Close()
}

// ErrBadPayload wraps every reason a full payload is refused.
var ErrBadPayload = errors.New("bad payload")

// ReaderLimits bound what a PayloadReader accepts.
type ReaderLimits struct {
	MaxMembers    int   // binaries, not counting package_details.json
	MaxMemberSize int64 // bytes of one binary
	MaxTotal      int64 // bytes of all binaries together
}

// DefaultLimits suit a gateway: 256 apps, 4 GiB each, 16 GiB in all.
var DefaultLimits = ReaderLimits{MaxMembers: 256, MaxMemberSize: 4 << 30, MaxTotal: 16 << 30}

// PayloadReader reads an untrusted full payload member by member (design.md, packaging): one gzip
// member, regular files with flat valid names only, no duplicates, no xattrs, bounded sizes,
// package_details.json last, and nothing but zero padding after the end of the archive.
type PayloadReader struct {
	src     *bufio.Reader
	gz      *gzip.Reader
	tr      *tar.Reader
	lim     ReaderLimits
	seen    map[string]bool
	total   int64
	details *Details
}

// NewPayloadReader checks the gzip magic and header of r.
func NewPayloadReader(r io.Reader, lim ReaderLimits) (*PayloadReader, error) {
	src := bufio.NewReaderSize(r, 64<<10)
	magic, err := src.Peek(2)
	if err != nil || magic[0] != 0x1f || magic[1] != 0x8b {
		return nil, fmt.Errorf("%w: not gzip data (no 1f 8b magic)", ErrBadPayload)
	}
	gz, err := gzip.NewReader(src)
	if err != nil {
		return nil, fmt.Errorf("%w: gzip header: %v", ErrBadPayload, err)
	}
	gz.Multistream(false)
	return &PayloadReader{src: src, gz: gz, tr: tar.NewReader(gz), lim: lim, seen: map[string]bool{}}, nil
}

// Next returns the next binary member. After the last one it reads package_details.json,
// checks the end of the stream and returns io.EOF; Details then holds the parsed JSON.
func (p *PayloadReader) Next() (name string, size int64, body io.Reader, err error) {
	if p.details != nil {
		return "", 0, nil, io.EOF
	}
	hdr, err := p.tr.Next()
	if err == io.EOF {
		return "", 0, nil, fmt.Errorf("%w: archive ends without %s", ErrBadPayload, DetailsName)
	}
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: tar: %v", ErrBadPayload, err)
	}
	if err := p.checkHeader(hdr); err != nil {
		return "", 0, nil, err
	}
	if hdr.Name == DetailsName {
		d, err := DecodeDetails(p.tr)
		if err != nil {
			return "", 0, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		if err := p.finish(); err != nil {
			return "", 0, nil, err
		}
		p.details = d
		return "", 0, nil, io.EOF
	}
	if len(p.seen) > p.lim.MaxMembers {
		return "", 0, nil, fmt.Errorf("%w: more than %d members", ErrBadPayload, p.lim.MaxMembers)
	}
	if hdr.Size > p.lim.MaxMemberSize {
		return "", 0, nil, fmt.Errorf("%w: member %q is %d bytes, over the limit of %d", ErrBadPayload, hdr.Name, hdr.Size, p.lim.MaxMemberSize)
	}
	p.total += hdr.Size
	if p.total > p.lim.MaxTotal {
		return "", 0, nil, fmt.Errorf("%w: members add up to more than %d bytes", ErrBadPayload, p.lim.MaxTotal)
	}
	return hdr.Name, hdr.Size, &exactReader{r: p.tr, left: hdr.Size, name: hdr.Name}, nil
}

// Details returns package_details.json once Next has returned io.EOF.
func (p *PayloadReader) Details() *Details { return p.details }

func (p *PayloadReader) checkHeader(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeReg { // archive/tar reports the old '\x00' type as TypeReg
		return fmt.Errorf("%w: member %q is not a regular file (type %q)", ErrBadPayload, hdr.Name, hdr.Typeflag)
	}
	if err := ValidFileName(hdr.Name); err != nil {
		return fmt.Errorf("%w: member: %v", ErrBadPayload, err)
	}
	if p.seen[hdr.Name] {
		return fmt.Errorf("%w: member %q appears twice", ErrBadPayload, hdr.Name)
	}
	p.seen[hdr.Name] = true
	for k := range hdr.PAXRecords {
		if strings.Contains(strings.ToLower(k), "xattr") || strings.HasPrefix(k, "GNU.sparse") {
			return fmt.Errorf("%w: member %q carries PAX record %q", ErrBadPayload, hdr.Name, k)
		}
	}
	if hdr.Size < 0 {
		return fmt.Errorf("%w: member %q has a negative size", ErrBadPayload, hdr.Name)
	}
	return nil
}

// finish checks that the archive ends right after package_details.json, that only zero
// padding follows inside the gzip member, and that nothing follows the gzip member.
func (p *PayloadReader) finish() error {
	if _, err := p.tr.Next(); err != io.EOF {
		return fmt.Errorf("%w: members after %s", ErrBadPayload, DetailsName)
	}
	n, err := io.Copy(zeroChecker{}, io.LimitReader(p.gz, 1<<20+1))
	if err != nil {
		return fmt.Errorf("%w: after the archive: %v", ErrBadPayload, err)
	}
	if n > 1<<20 {
		return fmt.Errorf("%w: over 1 MiB of padding after the archive", ErrBadPayload)
	}
	if _, err := p.src.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the gzip stream", ErrBadPayload)
	}
	return nil
}

type zeroChecker struct{}

func (zeroChecker) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != 0 {
			return 0, errors.New("non-zero bytes after the end of the archive")
		}
	}
	return len(p), nil
}

// exactReader turns a short member into an error instead of a silent short file.
type exactReader struct {
	r    io.Reader
	left int64
	name string
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, fmt.Errorf("%w: member %q truncated", ErrBadPayload, e.name)
	}
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("%w: member %q: %v", ErrBadPayload, e.name, err)
	}
	return n, nil
}
