// Package deb writes Debian binary packages (.deb) byte for byte reproducibly: the same
// files, control fields and time give the same bytes. Every member belongs to root, every
// time is the one given (SOURCE_DATE_EPOCH: the commit's time), and the entries are sorted.
// `make deb` builds the project's packages with it (cmd-less: internal/deb/mkdeb).
package deb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

// File is one file of the package's data: its absolute path on the target, mode and bytes
// (or a symbolic link's target).
type File struct {
	Path string
	Mode int64
	Data []byte
	Link string
}

// Package is one binary package.
type Package struct {
	Control string // the control file's fields (without Installed-Size: computed)
	Files   []File
	Scripts map[string][]byte // postinst, prerm, postrm, preinst: mode 0755
	Conf    []string          // conffiles (absolute paths of Files)
	Time    time.Time         // every member's mtime
}

// Write writes the package as a .deb (ar: debian-binary, control.tar.gz, data.tar.gz).
func (p *Package) Write(w io.Writer) error {
	files := slices.Clone(p.Files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for i := 1; i < len(files); i++ {
		if files[i].Path == files[i-1].Path {
			return fmt.Errorf("deb: %s twice", files[i].Path)
		}
	}
	data, size, err := p.data(files)
	if err != nil {
		return err
	}
	control, err := p.control(files, size)
	if err != nil {
		return err
	}
	ar := &arWriter{w: w, time: p.Time}
	if err := ar.header(); err != nil {
		return err
	}
	for _, m := range []struct {
		name string
		body []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", control}, {"data.tar.gz", data}} {
		if err := ar.add(m.name, m.body); err != nil {
			return err
		}
	}
	return nil
}

// data is data.tar.gz: the files and every directory above them; size is Installed-Size
// (KiB, as dpkg-gencontrol counts: each file and directory rounded up to a KiB).
func (p *Package) data(files []File) ([]byte, int64, error) {
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, 0, fmt.Errorf("deb: %q is not a clean absolute path", f.Path)
		}
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		name string
		f    *File
	}
	var entries []entry
	for d := range dirs {
		entries = append(entries, entry{name: "." + d + "/"})
	}
	for i := range files {
		entries = append(entries, entry{name: "." + files[i].Path, f: &files[i]})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return strings.Compare(strings.TrimSuffix(a.name, "/"), strings.TrimSuffix(b.name, "/"))
	})
	var size int64
	body, err := tarGz(func(tw *tar.Writer) error {
		if err := tw.WriteHeader(p.header("./", tar.TypeDir, 0o755, 0)); err != nil {
			return err
		}
		for _, e := range entries {
			if e.f == nil || e.f.Link != "" {
				size++ // a directory or a link: one KiB, as dpkg-gencontrol counts
			}
			switch {
			case e.f == nil:
				if err := tw.WriteHeader(p.header(e.name, tar.TypeDir, 0o755, 0)); err != nil {
					return err
				}
			case e.f.Link != "":
				h := p.header(e.name, tar.TypeSymlink, 0o777, 0)
				h.Linkname = e.f.Link
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
			default:
				size += (int64(len(e.f.Data)) + 1023) / 1024
				if err := tw.WriteHeader(p.header(e.name, tar.TypeReg, e.f.Mode, int64(len(e.f.Data)))); err != nil {
					return err
				}
				if _, err := tw.Write(e.f.Data); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return body, size, err
}

// control is control.tar.gz: control (with Installed-Size), md5sums, conffiles, scripts.
func (p *Package) control(files []File, size int64) ([]byte, error) {
	fields := strings.TrimRight(p.Control, "\n")
	if strings.Contains(fields, "Installed-Size:") {
		return nil, fmt.Errorf("deb: Installed-Size is computed")
	}
	// Installed-Size goes after Architecture, where dpkg-gencontrol puts it.
	var ctl strings.Builder
	for _, line := range strings.Split(fields, "\n") {
		ctl.WriteString(line + "\n")
		if strings.HasPrefix(line, "Architecture:") {
			fmt.Fprintf(&ctl, "Installed-Size: %d\n", size)
		}
	}
	var sums strings.Builder
	for _, f := range files {
		if f.Link == "" {
			h := md5.Sum(f.Data)
			fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h[:]), strings.TrimPrefix(f.Path, "/"))
		}
	}
	members := map[string][]byte{"control": []byte(ctl.String()), "md5sums": []byte(sums.String())}
	if len(p.Conf) > 0 {
		for _, c := range p.Conf {
			if !slices.ContainsFunc(files, func(f File) bool { return f.Path == c }) {
				return nil, fmt.Errorf("deb: conffile %s is not in the package", c)
			}
		}
		members["conffiles"] = []byte(strings.Join(p.Conf, "\n") + "\n")
	}
	for name, body := range p.Scripts {
		members[name] = body
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range members {
			if !yield(n) {
				return
			}
		}
	})
	return tarGz(func(tw *tar.Writer) error {
		if err := tw.WriteHeader(p.header("./", tar.TypeDir, 0o755, 0)); err != nil {
			return err
		}
		for _, n := range names {
			mode := int64(0o644)
			if _, ok := p.Scripts[n]; ok {
				mode = 0o755
			}
			if err := tw.WriteHeader(p.header("./"+n, tar.TypeReg, mode, int64(len(members[n])))); err != nil {
				return err
			}
			if _, err := tw.Write(members[n]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (p *Package) header(name string, typ byte, mode, size int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: size, ModTime: p.Time, Uname: "root", Gname: "root", Format: tar.FormatGNU}
}

// tarGz is a gzip'd tar (no name or time in the gzip header). The default level: the best
// one takes five times as long for 0.3% fewer bytes of a Go binary.
func tarGz(fill func(*tar.Writer) error) ([]byte, error) {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	tw := tar.NewWriter(gz)
	if err := fill(tw); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// arWriter writes the common ar format dpkg reads.
type arWriter struct {
	w    io.Writer
	time time.Time
}

func (a *arWriter) header() error {
	_, err := io.WriteString(a.w, "!<arch>\n")
	return err
}

func (a *arWriter) add(name string, body []byte) error {
	hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, a.time.Unix(), 0, 0, "100644", len(body))
	if _, err := io.WriteString(a.w, hdr); err != nil {
		return err
	}
	if _, err := a.w.Write(body); err != nil {
		return err
	}
	if len(body)%2 == 1 {
		_, err := a.w.Write([]byte{'\n'})
		return err
	}
	return nil
}

// Gzip is data compressed as a man page or a changelog must be (maximum compression, no
// name or time: reproducible).
func Gzip(data []byte) []byte {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	gz.Write(data)
	gz.Close()
	return buf.Bytes()
}

// ValidVersion checks a Debian version as dpkg reads it: [epoch:]upstream[-revision],
// starting with a digit, of letters, digits and . + ~ (and - before a revision).
func ValidVersion(v string) error {
	up := v
	if i := strings.IndexByte(up, ':'); i >= 0 {
		up = up[i+1:]
	}
	if i := strings.LastIndexByte(up, '-'); i >= 0 {
		up = up[:i]
	}
	ok := up != "" && up[0] >= '0' && up[0] <= '9'
	for _, c := range up {
		ok = ok && (c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune(".+~-", c))
	}
	if !ok {
		return fmt.Errorf("version %q is not a Debian version (it must start with a digit; letters, digits and . + ~ only)", v)
	}
	return nil
}
