package testserver

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// serveFirmware is the firmware CDN: a CloudFront distribution in front of the S3 bucket
// (protocol.md 3.4). Objects are the catalog's binaries under /firmware/<app>_<version> and
// their release statements under /firmware/<app>_<version>.release.
func (s *Server) serveFirmware(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.edgeError(w, 403, "This distribution is not configured to allow the HTTP request method that was used for this request.")
		return
	}
	if s.verifier != nil {
		if code, msg := s.verifier.Check(r, s.now()); code != "" {
			xmlError(w, 403, code, msg)
			return
		}
	}
	key := strings.TrimPrefix(r.URL.Path, "/firmware/")
	if key == "ota-keys.release" || key == "ota-timestamp.release" {
		s.serveBucketDoc(w, r, key)
		return
	}
	if base, _, ok := strings.Cut(key, ".from-"); ok && (strings.HasSuffix(key, ".zst") || strings.HasSuffix(key, ".blocks")) {
		s.servePatch(w, r, base, key)
		return
	}
	if base, ok := strings.CutSuffix(key, ".chunks"); ok {
		s.servePatch(w, r, base, key)
		return
	}
	row, release := s.findObject(key)
	if row == nil {
		xmlError(w, 404, "NoSuchKey", "The specified key does not exist.")
		return
	}
	hdr := w.Header()
	hdr.Set("X-Cache", "Hit from cloudfront")
	hdr.Set("Via", "1.1 "+s.edge.viaHex+".cloudfront.net (CloudFront)")
	if release {
		if row.Sig == "" {
			xmlError(w, 404, "NoSuchKey", "The specified key does not exist.")
			return
		}
		body, _ := json.Marshal(row.Release())
		hdr.Set("Content-Type", "application/json")
		hdr.Set("ETag", `"`+md5hex(body)+`"`)
		http.ServeContent(w, r, key, time.Time{}, bytes.NewReader(body))
		return
	}
	f, err := os.Open(row.Path())
	if err != nil {
		xmlError(w, 500, "InternalError", "We encountered an internal error. Please try again.")
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	hdr.Set("Content-Type", "binary/octet-stream")
	hdr.Set("ETag", `"`+row.MD5+`"`) // S3's single-part ETag
	http.ServeContent(w, r, key, st.ModTime(), f)
}

func (s *Server) findObject(key string) (*Row, bool) {
	name, release := strings.CutSuffix(key, ".release")
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range s.cat.Rows {
		if s.cat.Rows[i].Key() == name {
			r := s.cat.Rows[i]
			return &r, release
		}
	}
	return nil, false
}

// serveBucketDoc serves a trust document `ota-release` wrote into the catalog directory
// (protocol.md 3.5): cacheable, with the S3 ETag, 304 to a matching If-None-Match; 404 when
// none is published.
func (s *Server) serveBucketDoc(w http.ResponseWriter, r *http.Request, key string) {
	s.mu.RLock()
	dir := s.cat.Dir()
	s.mu.RUnlock()
	body, err := os.ReadFile(filepath.Join(dir, key))
	if err != nil {
		xmlError(w, 404, "NoSuchKey", "The specified key does not exist.")
		return
	}
	hdr := w.Header()
	hdr.Set("X-Cache", "Hit from cloudfront")
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "max-age=60")
	hdr.Set("ETag", `"`+md5hex(body)+`"`)
	http.ServeContent(w, r, key, time.Time{}, bytes.NewReader(body))
}

// servePatch serves `<key>.from-<h16>.zst` (`ota-release delta`) or `<key>.chunks` (`ota-release
// index`) written beside the row's binary, with Range, If-Range and an S3 ETag like any
// object; 404 when none is there.
func (s *Server) servePatch(w http.ResponseWriter, r *http.Request, base, key string) {
	row, _ := s.findObject(base)
	if row == nil || strings.ContainsAny(key, "/\\") {
		xmlError(w, 404, "NoSuchKey", "The specified key does not exist.")
		return
	}
	f, err := os.Open(filepath.Join(filepath.Dir(row.Path()), key))
	if err != nil {
		xmlError(w, 404, "NoSuchKey", "The specified key does not exist.")
		return
	}
	defer f.Close()
	h := md5.New()
	io.Copy(h, f)
	f.Seek(0, io.SeekStart)
	st, _ := f.Stat()
	hdr := w.Header()
	hdr.Set("X-Cache", "Hit from cloudfront")
	hdr.Set("Content-Type", "binary/octet-stream")
	hdr.Set("ETag", fmt.Sprintf(`"%x"`, h.Sum(nil)))
	http.ServeContent(w, r, key, st.ModTime(), f)
}

// xmlError is the S3 / CloudFront error document.
func xmlError(w http.ResponseWriter, status int, code, msg string) {
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Cache", "Error from cloudfront")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}

func md5hex(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}
