// Package edgecache holds the bodies the test server's CloudFront edge caches: in memory
// while small, in a file beyond 4 MiB (bounded memory for 1 GiB payloads).
package edgecache

import (
	"bytes"
	"io"
	"os"
)

const spoolInMemory = 4 << 20

// NewSpool is an empty body whose file, if it needs one, goes in dir.
func NewSpool(dir string) *Spool { return &Spool{dir: dir} }

// Len is the body's size so far.
func (sp *Spool) Len() int64 { return sp.n }

// Spool holds a cached body: in memory while small, in a file beyond spoolInMemory.
type Spool struct {
	dir  string
	mem  bytes.Buffer
	f    *os.File
	path string
	n    int64
}

func (sp *Spool) Write(p []byte) (int, error) {
	if sp.f == nil && sp.mem.Len()+len(p) > spoolInMemory {
		f, err := os.CreateTemp(sp.dir, "edge-*")
		if err != nil {
			return 0, err
		}
		sp.f, sp.path = f, f.Name()
		if _, err := f.Write(sp.mem.Bytes()); err != nil {
			return 0, err
		}
		sp.mem = bytes.Buffer{}
	}
	sp.n += int64(len(p))
	if sp.f != nil {
		return sp.f.Write(p)
	}
	return sp.mem.Write(p)
}

// Finish closes the body's file (the body is whole).
func (sp *Spool) Finish() error {
	if sp.f != nil {
		err := sp.f.Close()
		sp.f = nil
		return err
	}
	return nil
}

// ReaderAtCloser is a cached body being read.
type ReaderAtCloser interface {
	io.ReaderAt
	io.Closer
}

// Open reads the body.
func (sp *Spool) Open() (ReaderAtCloser, error) {
	if sp.path != "" {
		return os.Open(sp.path)
	}
	return nopCloser{bytes.NewReader(sp.mem.Bytes())}, nil
}

// Remove deletes the body's file.
func (sp *Spool) Remove() {
	if sp.path != "" {
		os.Remove(sp.path)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
