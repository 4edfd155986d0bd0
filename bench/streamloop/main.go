// Command streamloop is the bench's plain streaming loop: GET a full payload, gunzip → tar →
// one file per member with MD5 + SHA-256 computed while writing, fsync each. No
// verification, no slots, no database: the floor the full cycle is compared with.
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	url, dir := os.Args[1], os.Args[2]
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Get(url)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		panic(err)
	}
	tr := tar.NewReader(zr)
	buf := make([]byte, 256<<10)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		f, err := os.Create(filepath.Join(dir, filepath.Base(h.Name)))
		if err != nil {
			panic(err)
		}
		m, s := md5.New(), sha256.New()
		if _, err := io.CopyBuffer(io.MultiWriter(f, m, s), tr, buf); err != nil {
			panic(err)
		}
		if err := f.Sync(); err != nil {
			panic(err)
		}
		f.Close()
		fmt.Printf("%s %x %x\n", h.Name, m.Sum(nil), s.Sum(nil))
	}
}
